"""Evaluation.

Built: spoken MT-Bench, ``kame eval mtbench question.jsonl -o OUT/ --judge SPEC``
(kame.eval.mtbench; docs/eval.md). MT-Bench's questions (reasoning, STEM, humanities by default;
first turn, or both with ``--turns 2``) are spoken by a TTS, run through the agent in file mode
(kame.runtime.filemode, the same path as ``kame run``; tandem or ``--mode cascade``), and what the
agent said is rated 1-10 by an LLM judge (kame.eval.judge, MT-Bench's single-answer grading in
kame's wording); latency is measured per question as ``kame bench latency`` (kame.bench.latency)
measures it, and with ``--asr`` content latency: the first word of the answer audible, as whisper
tiny.en hears the agent's audio (kame.eval.heard; ``--answer heard`` has the judge rate that
transcript). Results per question in OUT/results.jsonl (resumable), a table per category.
``--reference gpt-4.jsonl``: FastChat's reference answers, given to the judge for math, reasoning
and coding as FastChat's judge gives them (kame.eval.reference; the question file's own
"reference" is the fallback).

Built: ``kame eval follow MANIFEST --frontend SPEC`` (kame.eval.follow; docs/eval.md): the front-end
alone, run through the Stepper on held-out dialogues with their recorded oracle; how much of the
oracle's words it says (text stream and whisper on its audio) and when.

Built: ``kame eval pairwise OUT_A OUT_B --judge SPEC -o OUT`` (kame.eval.pairwise; docs/eval.md):
MT-Bench's A/B grading of two mtbench folders (e.g. tandem vs cascade), judged in both orders (a
win only when both agree, else a tie), a win/tie table per category.
"""
