"""Evaluation.

Built: spoken MT-Bench, ``kame eval mtbench question.jsonl -o OUT/ --judge SPEC``
(kame.eval.mtbench; docs/eval.md). MT-Bench's questions (reasoning, STEM, humanities by default;
first turn, or both with ``--turns 2``) are spoken by a TTS, run through the agent in file mode
(kame.runtime.filemode, the same path as ``kame run``; tandem or ``--mode cascade``), and what the
agent said is rated 1-10 by an LLM judge (kame.eval.judge, MT-Bench's single-answer grading in
kame's wording); latency is measured per question as ``kame bench latency`` (kame.bench.latency)
measures it. Results per question in OUT/results.jsonl (resumable), a table per category.

Not built yet: pairwise grading (MT-Bench's A/B mode), a GPT-4 reference-answer file (the
question file's own "reference" is used when it has one), content latency (the first word of the
answer audible, via ASR) per question.
"""
