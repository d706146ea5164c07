"""kame.train.qa: reading GSM8K, MMLU-Pro, HSSBench and plain QA files (records modelled on the
published sets), auto-detection, the errors that name file and line, limit, stable ids, HSSBench's
pictures, and the spoken turns (no annotations, markup or LaTeX, the final answer kept, the cap)."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
import warnings

import pytest

from kame.train.data import DataError
from kame.errors import KameError
from kame.train.qa import FORMATS, LANGUAGES, QAItem, read_qa, speakable, spoken_turns

GSM8K = [  # openai/gsm8k, test split
    {"question": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
                 "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per "
                 "fresh duck egg. How much in dollars does she make every day at the farmers' market?",
     "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at "
               "the farmer’s market.\n#### 18"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?",
     "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 bolts of "
               "fabric\n#### 3"},
]
MMLU_PRO = [  # TIGER-Lab/MMLU-Pro, validation split (cot_content is empty in the test split)
    {"question_id": 0, "question": "The symmetric group $S_n$ has $\\frac{n!}{1}$ elements, hence it is not true that "
     "$S_{10}$ has 10 elements.\nFind the characteristic of the ring 2Z.",
     "options": ["0", "30", "3", "10", "12", "50", "2", "100", "20", "5"], "answer": "A", "answer_index": 0,
     "cot_content": "A: Let's think step by step. A characteristic of a ring is R is $n$ if the statement $ka = 0$ for "
                    "all $a\\in 2Z$ implies that $k$ is a multiple of $n$. Assume that $ka = 0$ for all $a\\in 2Z$ for "
                    "some $k$. In particular $2k = 0$. Hence $k=0$ and $n=0$. The answer is (A).",
     "category": "math", "src": "cot_lib-abstract_algebra"},
    {"question_id": 70, "question": "Typical advertising regulatory bodies suggest, for example that adverts must not: "
     "encourage _________, cause unnecessary ________ or _____, and must not cause _______ offence.",
     "options": ["Safe practices, Fear, Jealousy, Trivial", "Unsafe practices, Distress, Joy, Trivial",
                 "Safe practices, Wants, Jealousy, Trivial", "Safe practices, Distress, Fear, Trivial",
                 "Unsafe practices, Wants, Jealousy, Serious", "Safe practices, Distress, Jealousy, Serious",
                 "Safe practices, Wants, Fear, Serious", "Unsafe practices, Wants, Fear, Trivial",
                 "Unsafe practices, Distress, Fear, Serious"], "answer": "I", "answer_index": 8, "cot_content": "",
     "category": "business", "src": "ori_mmlu-business_ethics"},
]
HSSBENCH = [  # Zhaolu-K/HSSBench data/data-open.jsonl: every item has a picture, most questions need it
    {"id": "4c97cd84-a7c9-458e-bc78-e1a1f717633b", "pic_path": "Social-images_ca26bfb1.png",
     "question": "In the first round of the 1969 French presidential election, the conservative candidate Pompidou led, "
                 "while the centrist Poher and the communist Duclos together received more than 40% of the votes. Which "
                 "of the following analyses about the possibilities for the second round of the election best aligns "
                 "with the political reality of France at that time?",
     "options": {"A": "If the left wing unites, the voters of Bohe and Diklo will unconditionally turn to each other, "
                      "easily defeating Pompidou.",
                 "B": "The French Communist Party refuses to support centrist candidates, so left-wing consolidation in "
                      "the second round is basically impossible.",
                 "C": "In the second round, all centrist and left-wing voters tend to support Pompidou in pursuit of "
                      "national stability.",
                 "D": "Despite leading in the first round, Pompidou struggled to secure a majority in the second round, "
                      "so France will hold a third round of voting."},
     "correct_answer": "B", "category": "Social science", "original_id": "ca26bfb1",
     "type": ["Political Science", "Sociology"], "is_open": "1"},
    {"id": "e7aa8d31-efa8-4400-b9d7-ee49704a9b08", "pic_path": "eco_images_0506_c8f2eeb3.jpeg",
     "question": " The Edgeworth box illustrates possibilities for Karen and James to increase their satisfaction by "
                 "trading goods. If point A gives the initial allocation of food and clothing, a movement into the "
                 "shaded area: ",
     "options": {"A": "leaves Karen better off, but James worse off.", "B": "leaves James better off, but Karen worse off.",
                 "C": "leaves James and Karen worse off.", "D": "leaves James and Karen better off."},
     "correct_answer": "D", "category": "Economy", "original_id": "c8f2eeb3", "type": ["Microeconomics"], "is_open": "1"},
    {"id": "40eadf5b-d240-4441-8652-ed41e3b43bbc", "pic_path": "eco_images_0506_81f3642c.png",
     "question": "Demand and Supply Schedules for Chocolate Bars \nRefer to Table 5-1. Suppose the government imposed a "
                 "price of $0.60 per chocolate bar. The \nresult would be ",
     "options": {"A": "excess demand of 450 chocolate bars per week.", "B": "excess supply of 450 chocolate bars per week."},
     "correct_answer": "A", "category": "Economy", "original_id": "81f3642c", "type": ["Microeconomics"], "is_open": "1"},
    {"id": "75375ce7-555e-47ea-8cca-30e8fdafd04f", "pic_path": "Social-images_608.png",
     "question": "Full employment of laborers can expand domestic demand and promote healthy economic development. "
                 "According to the economic knowledge learned, the positions a, b, c, and d in the diagram should be "
                 "filled in order with ( ). ① Increase in labor demand ② Increase in residents' income ③ Increase in "
                 "production supply ④ Increase in consumer demand",
     "options": {"A": "①②③④", "B": "②④③①", "C": "④①②③", "D": "③④①②"}, "correct_answer": "B",
     "category": "Social science", "original_id": 615, "type": ["Sociology"], "is_open": "1"},
]
# HSSBench's raw files (data/raw/*/*.json) hold the six UN languages; their "language" field, where there
# is one, is sometimes wrong (social-1300.json: "en" on Chinese questions)
HSSBENCH_UN = [
    {"id": "zh-1", "question": "下图的故事中，孩子的行为得到了坏的后果，属于（ ）", "options": {"A": "正强化", "B": "负强化",
     "C": "惩罚", "D": "消退"}, "correct_answer": "C", "language": "en"},
    {"id": "zh-2", "question": "图片中正在制作的食物？", "options": {"A": "Roti Canai", "B": "Pancake", "C": "Apom Manis",
     "D": "Lapis"}, "correct_answer": "A"},
    {"id": "es-1", "question": "La ONU define a las poblaciones indígenas como los «primeros pueblos». ¿Cuál de las "
     "siguientes regiones tiene más pueblos indígenas?", "options": {"A": "Europa", "B": "América Latina"},
     "correct_answer": "B"},
    {"id": "fr-1", "question": "Quelle est la principale source de tensions en mer de Chine méridionale ?",
     "options": {"A": "Les revendications territoriales", "B": "Le tourisme"}, "correct_answer": "A"},
    {"id": "ar-1", "question": "يُعَدُّ خليج كاليفورنيا في أمريكا الشمالية بمثابة:", "options": {
     "A": "مياه داخلية للمكسيك.", "B": "مياه داخلية للولايات المتحدة"}, "correct_answer": "A"},
    {"id": "ru-1", "question": "Установите соответствие между заливом и его обозначением на карте мира.",
     "options": {"A": "Бенгальский", "B": "Гвинейский"}, "correct_answer": "A"},
    {"id": "zh-3", "question": "Which art form is shown?", "options": {"A": "Opera", "B": "Ballet"},
     "correct_answer": "A", "language": "zh"},  # not English: the record says so
    {"id": "zh-4", "question": "该图片中，舞者佩戴的面具最显著的特征是？", "options": {"A": "狮子头搭配羽毛装饰", "B": "蛇形缠绕的龙头"},
     "correct_answer": "A", "language": "zh"},
]
QA = [{"question": "What is the capital of **France**?", "answer": "Paris. It has been the capital since 987."},
      {"id": "q7", "question": "How many legs has a spider?", "answer": 8}]


def jsonl(path, records, *, extra_lines=()):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "".join(extra_lines),
                    encoding="utf-8")
    return path


def no_markup(text):
    return not any(c in text for c in "\n<>*#$\\{}^_|`")


def test_gsm8k_is_read_and_spoken_with_its_final_answer(tmp_path):
    items = read_qa(jsonl(tmp_path / "test.jsonl", GSM8K))
    a = items[0]
    assert (a.id, a.correct, a.choices, a.question, a.answer) == ("gsm8k/test/0", "18", None, GSM8K[0]["question"],
                                                                  GSM8K[0]["answer"])
    assert a.source == {"dataset": "gsm8k", "file": str(tmp_path / "test.jsonl"), "index": 0, "line": 1}
    user, agent = spoken_turns(a)
    assert user.startswith("Janet’s ducks lay 16 eggs per day.") and "2 dollars per fresh duck egg" in user
    assert agent == ("Janet sells 16 minus 3 minus 4 is 9 duck eggs a day. She makes 9 times 2 is 18 dollars every day "
                     "at the farmer’s market. So the answer is 18.")
    assert spoken_turns(items[1])[1] == ("It takes 2 divided by 2 is 1 bolt of white fiber. So the total amount of fabric is "
                                         "2 plus 1 is 3 bolts of fabric. So the answer is 3.")
    for item in items:
        assert all(no_markup(t) and "<<" not in t for t in spoken_turns(item))


def test_a_long_solution_keeps_its_last_sentences_and_always_the_answer():
    steps = "\n".join(f"Step {i} adds {i} + 1 = <<{i}+1={i + 1}>>{i + 1} apples." for i in range(1, 30))
    item = QAItem("gsm8k/x/0", "How many apples?", steps + "\n#### 30", {"dataset": "gsm8k"}, correct="30")
    agent = spoken_turns(item, max_answer_words=30)[1]
    assert len(agent.split()) <= 30 and agent.endswith("So the answer is 30.")
    assert "Step 29 adds 29 plus 1 is 30 apples." in agent and "Step 1 " not in agent  # the last steps are kept
    assert spoken_turns(item, max_answer_words=2)[1] == "So the answer is 30."  # the answer even past the cap


def test_mmlu_pro_is_read_with_letters_and_spoken_with_the_options(tmp_path):
    items = read_qa(jsonl(tmp_path / "validation.jsonl", MMLU_PRO))
    a, b = items
    assert (a.id, a.correct, a.choices[:3], b.id, b.correct, b.answer) == (
        "mmlu-pro/0", "A", ["0", "30", "3"], "mmlu-pro/70", "I", "I")  # no cot_content: the letter
    assert a.answer.startswith("A: Let's think step by step.")
    assert {k: a.source[k] for k in ("dataset", "question_id", "category", "src")} == {
        "dataset": "mmlu-pro", "question_id": 0, "category": "math", "src": "cot_lib-abstract_algebra"}
    user, agent = spoken_turns(a)
    assert user == ("The symmetric group Sn has n! over 1 elements, hence it is not true that S10 has 10 elements. "
                    "Find the characteristic of the ring 2Z. Is it A, 0; B, 30; C, 3; D, 10; E, 12; F, 50; G, 2; "
                    "H, 100; I, 20; or J, 5?")
    assert agent.startswith("It's A, 0. ") and agent.endswith("Hence k is 0 and n is 0.")  # the reason's end
    assert "step by step" not in agent and "(A)" not in agent and len(agent.split()) <= 60
    assert spoken_turns(a, max_answer_words=5)[1] == "It's A, 0."  # no room for a reason
    user, agent = spoken_turns(b)
    assert user.startswith("Typical advertising regulatory bodies suggest, for example that adverts must not: "
                           "encourage blank, cause unnecessary blank or blank, and must not cause blank offence. Is it "
                           "A, Safe practices, Fear, Jealousy, Trivial; B, ")
    assert user.endswith("; or I, Unsafe practices, Distress, Fear, Serious?")
    assert agent == "It's I, Unsafe practices, Distress, Fear, Serious."
    assert all(no_markup(t) for item in items for t in spoken_turns(item))


def test_hssbench_leaves_out_items_that_need_their_picture_and_says_so(tmp_path, caplog):
    path = jsonl(tmp_path / "data-open.jsonl", HSSBENCH)
    with caplog.at_level(logging.WARNING, logger="kame.train.qa"):
        items = read_qa(path)
    assert re.search(r"3 HSSBench item\(s\) left out .* needs its picture .*e7aa8d31.*; to keep them use --images keep "
                     r"\(read_qa: images='keep'\)", caplog.text)
    assert [i.id for i in items] == ["hssbench/4c97cd84-a7c9-458e-bc78-e1a1f717633b"]  # the one a listener can answer
    item = items[0]
    assert (item.correct, item.answer, item.choices[1][:26]) == ("B", "B", "The French Communist Party")
    assert item.source["image"] == "Social-images_ca26bfb1.png" and item.source["category"] == "Social science"
    user, agent = spoken_turns(item)
    assert "received more than 40 percent of the votes." in user and user.endswith(
        "at that time? Is it A, If the left wing unites, the voters of Bohe and Diklo will unconditionally turn to each "
        "other, easily defeating Pompidou; B, The French Communist Party refuses to support centrist candidates, so "
        "left-wing consolidation in the second round is basically impossible; C, In the second round, all centrist and "
        "left-wing voters tend to support Pompidou in pursuit of national stability; or D, Despite leading in the first "
        "round, Pompidou struggled to secure a majority in the second round, so France will hold a third round of voting?")
    assert agent == ("It's B, The French Communist Party refuses to support centrist candidates, so left-wing "
                     "consolidation in the second round is basically impossible.")
    kept = read_qa(path, images="keep")
    assert len(kept) == 4 and spoken_turns(kept[2])[0].startswith(
        "Demand and Supply Schedules for Chocolate Bars. Refer to Table 5-1. Suppose the government imposed a price of "
        "0.60 dollars per chocolate bar. The result would be? Is it A, excess demand")
    assert spoken_turns(kept[1])[0].endswith("a movement into the shaded area? Is it A, leaves Karen better off, but "
                                             "James worse off; B, leaves James better off, but Karen worse off; C, "
                                             "leaves James and Karen worse off; or D, leaves James and Karen better off?")
    user, agent = spoken_turns(kept[3])  # circled statement numbers are read as numbers, one by one
    assert "filled in order with blank. 1, Increase in labor demand 2, Increase" in user
    assert user.endswith("Is it A, 1, 2, 3, 4; B, 2, 4, 3, 1; C, 4, 1, 2, 3; or D, 3, 4, 1, 2?")
    assert agent == "It's B, 2, 4, 3, 1."
    with pytest.raises(DataError, match="no item is left"):  # every item needs its picture
        read_qa(jsonl(tmp_path / "b.jsonl", HSSBENCH[1:]))
    raw = [dict(HSSBENCH[0], image_necessity="需要"), dict(HSSBENCH[2], image_necessity="不需要")]  # raw files say it
    assert [i.source["original_id"] for i in read_qa(jsonl(tmp_path / "raw.jsonl", raw))] == ["81f3642c"]


def test_json_lists_json_lines_and_plain_qa(tmp_path):
    (tmp_path / "hss.json").write_text(json.dumps(HSSBENCH, ensure_ascii=False, indent=4), encoding="utf-8")
    assert [i.id for i in read_qa(tmp_path / "hss.json", images="keep")] == [
        "hssbench/" + r["id"] for r in HSSBENCH]
    jsonl(tmp_path / "lines.json", GSM8K)  # the hub's .json files are sometimes JSON lines
    assert [i.correct for i in read_qa(tmp_path / "lines.json")] == ["18", "3"]
    items = read_qa(jsonl(tmp_path / "trivia.jsonl", QA))
    assert [(i.id, i.answer, i.correct) for i in items] == [("qa/trivia/0", QA[0]["answer"], None),
                                                            ("qa/trivia/q7", "8", None)]
    assert spoken_turns(items[0]) == ("What is the capital of France?", "Paris. It has been the capital since 987.")
    assert spoken_turns(items[0], max_answer_words=3) == ("What is the capital of France?", "Paris.")  # whole sentences
    assert spoken_turns(items[1]) == ("How many legs has a spider?", "8")


def test_auto_detection_and_explicit_formats(tmp_path):
    files = {"gsm8k": GSM8K, "mmlu-pro": MMLU_PRO, "hssbench": HSSBENCH, "qa": QA}
    assert set(files) == set(FORMATS)
    for fmt, records in files.items():
        path = jsonl(tmp_path / f"{fmt}.jsonl", records)
        auto = read_qa(path, images="keep")
        assert {i.source["dataset"] for i in auto} == {fmt} and auto == read_qa(path, fmt, images="keep")
    # a GSM8K file read as plain QA keeps the solution as it is, and has no final answer
    assert read_qa(tmp_path / "gsm8k.jsonl", "qa")[0].correct is None


def test_limit_reads_no_further_and_ids_are_stable(tmp_path):
    path = jsonl(tmp_path / "test.jsonl", GSM8K, extra_lines=["not json at all\n"])
    assert [i.id for i in read_qa(path, limit=2)] == ["gsm8k/test/0", "gsm8k/test/1"]  # the bad line is never read
    assert read_qa(path, limit=0) == []
    assert read_qa(jsonl(tmp_path / "test.jsonl", GSM8K)) == read_qa(path, limit=5 - 3)  # ids do not depend on limit
    with_blank = tmp_path / "blank.jsonl"
    with_blank.write_text("\n" + json.dumps(GSM8K[0]) + "\n\n" + json.dumps(GSM8K[1]) + "\n", encoding="utf-8")
    items = read_qa(with_blank)
    assert [(i.id, i.source["line"]) for i in items] == [("gsm8k/blank/0", 2), ("gsm8k/blank/1", 4)]
    with pytest.raises(ValueError, match="limit"):
        read_qa(path, limit=-1)


def test_errors_name_the_file_the_line_and_what_to_do(tmp_path):
    bad = jsonl(tmp_path / "bad.jsonl", GSM8K, extra_lines=['{"question": "x", "answer": \n'])
    with pytest.raises(DataError, match=rf"{bad}:3: not a JSON line"):
        read_qa(bad)
    odd = jsonl(tmp_path / "odd.jsonl", [{"prompt": "2+2?", "completion": "4"}])
    with pytest.raises(DataError, match=r"odd.jsonl:1: unknown QA record shape, keys \['completion', 'prompt'\]; "
                                        r"known formats: gsm8k .*mmlu-pro .*hssbench .*qa.*fmt='qa' or kame "
                                        r"data synth --format qa"):
        read_qa(odd)
    with pytest.raises(DataError, match=r"empty.jsonl:2: 'answer' is empty"):
        read_qa(jsonl(tmp_path / "empty.jsonl", [QA[0], {"question": "Why?", "answer": "  "}]))
    with pytest.raises(DataError, match=r"missing.jsonl:2: not a qa record: no 'answer'"):
        read_qa(jsonl(tmp_path / "missing.jsonl", [QA[0], {"question": "Why?"}]))
    with pytest.raises(DataError, match=r"plain.jsonl:1: a GSM8K answer ends with '#### N'.*fmt='qa' "
                                        r"\(kame data synth: --format qa\)"):
        read_qa(jsonl(tmp_path / "plain.jsonl", QA[:1]), "gsm8k")
    with pytest.raises(DataError, match=r"letter.jsonl:1 \(id 0\): answer 'K' is not one of the 10 options' letters A-J"):
        read_qa(jsonl(tmp_path / "letter.jsonl", [dict(MMLU_PRO[0], answer="K", answer_index=10)]))
    with pytest.raises(DataError, match="answer A and answer_index 3 disagree"):
        read_qa(jsonl(tmp_path / "disagree.jsonl", [dict(MMLU_PRO[0], answer_index=3)]))
    with pytest.raises(DataError, match=r"twice.jsonl:2 \(id 70\): id 'mmlu-pro/70' again \(first at .*twice.jsonl:1"):
        read_qa(jsonl(tmp_path / "twice.jsonl", [MMLU_PRO[1], MMLU_PRO[1]]))
    with pytest.raises(DataError, match=r"unknown QA format 'mmlu'; known formats: auto, gsm8k, mmlu-pro, hssbench, "
                                        r"qa"):  # a KameError: the CLI prints it without a traceback
        read_qa(odd, "mmlu")
    with pytest.raises(DataError, match="holds no QA records"):
        read_qa(jsonl(tmp_path / "none.jsonl", []))
    (tmp_path / "broken.json").write_text('[{"question": "a", "answer": "b"},\n {"question": ]', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json:2: not valid JSON"):
        read_qa(tmp_path / "broken.json")
    (tmp_path / "qa.csv").write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"cannot read \.csv; QA files are \.jsonl, \.json .* or \.parquet"):
        read_qa(tmp_path / "qa.csv")


LATIN1 = '{"question": "What is the café name?", "answer": "Café."}\n'.encode("latin-1")  # é: byte 0xe9, at 29


@pytest.mark.parametrize("name, data, byte", [
    ("latin1.jsonl", LATIN1, 29),
    ("utf16.jsonl", '{"question": "Why?", "answer": "Because."}\n'.encode("utf-16"), 0),  # its BOM, 0xff 0xfe
    ("latin1.json", b"[" + LATIN1.strip() + b"]", 30),
    ("late.jsonl", b'{"question": "Why?", "answer": "Because."}\n' * 300 + LATIN1, 43 * 300 + 29),  # past a chunk
])
def test_a_file_that_is_not_utf8_is_one_error_naming_it_and_the_byte(tmp_path, name, data, byte):
    """(was: a traceback, UnicodeDecodeError from the line loop) said as kame eval mtbench says it
    (kame.paths.read_text); a BOM is fine."""
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=rf"{name}: not UTF-8 text \(byte {byte}\); save it as UTF-8 "):
        read_qa(tmp_path / name, language=None)
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + LATIN1.decode("latin-1").encode("utf-8"))
    assert read_qa(tmp_path / "bom.jsonl")[0].answer == "Café."


def test_parquet_needs_pyarrow_or_pandas_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "test-00000-of-00001.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(DataError, match=r"reading Parquet needs pyarrow \(pip install pyarrow\).*convert the file to JSONL"):
        read_qa(path)
    table = types.SimpleNamespace(to_pylist=lambda: list(GSM8K))  # the rows as pyarrow gives them
    parquet = types.ModuleType("pyarrow.parquet")
    parquet.read_table = lambda p: table
    monkeypatch.setitem(sys.modules, "pyarrow", types.ModuleType("pyarrow"))
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", parquet)
    sys.modules["pyarrow"].parquet = parquet
    items = read_qa(path)
    assert [(i.id, i.source["row"]) for i in items] == [("gsm8k/test-00000-of-00001/0", 0),
                                                        ("gsm8k/test-00000-of-00001/1", 1)]


@pytest.mark.parametrize("text, said", [
    ("Natalia sold 48 / 2 = 24 clips.", "Natalia sold 48 divided by 2 is 24 clips."),
    ("She earned 12/60 = $<<12/60=0.2>>0.2 per minute", "She earned 12 divided by 60 is 0.2 dollars per minute"),
    ("Solve $x^2 + 3x = \\frac{a}{b}$ for $x$.", "Solve x squared plus 3x is a over b for x."),
    ("\\(Y_1\\) is 20% above $1 and $5 million.", "Y1 is 20 percent above 1 dollar and 5 million dollars."),
    ("# Result\n**Total:** `42` apples\n- one\n- two", "Result. Total: 42 apples. one. two."),
    ("(215/180) × 100 = 119.4", "215 divided by 180 times 100 is 119.4"),
    ("x² ≥ 4 and 3 ÷ 4 <br> is [small](http://a.b)", "x squared is at least 4 and 3 divided by 4 is small"),
    ("the ball-\npoint pen \nwas red", "the ball-point pen was red"),
    ("x^2 when 5^3 and y^{2} or", "x squared when 5 cubed and y squared or"),  # the space after stays
    ("It is x^2. Then 2^3.5 and x^23", "It is x squared. Then 2 to the power of 3.5 and x to the power of 23"),
    # control characters and terminal escapes are not spoken (was: "is\x01", "\x1b[31mred\x1b[0m" in the dialogues)
    ("What is\x01 the \x1b[31mred\x1b[0m color?\r\nTell me.", "What is the red color? Tell me."),
    ("Red is\x07 a\x00 color.\x1b]0;title\x07\x7f\x9f", "Red is a color."),
    ("one\x0btwo\x0cthree\x1ffour\x85five", "one two three four five"),
])
def test_speakable_text(text, said):
    assert speakable(text) == said


def test_spoken_turns_refuse_what_cannot_be_spoken():
    with pytest.raises(ValueError, match="max_answer_words"):
        spoken_turns(QAItem("qa/x/0", "Why?", "Because.", {}), max_answer_words=0)
    with pytest.raises(DataError, match="qa/x/1: nothing speakable left of its answer"):
        spoken_turns(QAItem("qa/x/1", "Why?", "$$ $$", {}))
    with pytest.raises(DataError, match="correct 'E' is not one of its letters ABCD"):
        spoken_turns(QAItem("mc/0", "Which?", "E", {}, ["a", "b", "c", "d"], "E"))
    # a first sentence longer than the cap is cut at it (an empty turn would be worse)
    assert spoken_turns(QAItem("qa/x/2", "Hi?", "A long answer here.", {}), max_answer_words=2)[1] == "A long."


def test_hssbench_items_with_nothing_to_see_are_read_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="kame.train.qa"):
        assert len(read_qa(jsonl(tmp_path / "text.jsonl", HSSBENCH[:1]))) == 1
    assert caplog.records == []


def test_items_in_other_languages_are_left_out_and_counted(tmp_path, caplog):
    """The count is a log line in the CLI's terms (was: a Python UserWarning with kame's source line, telling a
    CLI user to "pass language=None")."""
    path = jsonl(tmp_path / "un.jsonl", HSSBENCH_UN + HSSBENCH[:1])
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="kame.train.qa"):
        warnings.simplefilter("always")
        items = read_qa(path)
    assert [i.id for i in items] == ["hssbench/" + HSSBENCH[0]["id"]]
    assert caught == [] and [r.getMessage() for r in caplog.records] == [
        f"{path}: 8 item(s) left out as not in English (e.g. hssbench/zh-1); to keep them use --language any "
        "(read_qa: language=None)"]
    assert len(read_qa(path, language=None)) == len(read_qa(path, language="any")) == 9
    by_language = {lang: [i.id for i in read_qa(path, language=lang)] for lang in LANGUAGES if lang != "en"}
    # kept only when neither the record nor the text says another language: zh-1's "en" (wrong) loses it for
    # Chinese too, zh-2 is half Latin (its options), zh-3's text is English
    assert by_language == {"fr": ["hssbench/fr-1"], "es": ["hssbench/es-1"], "zh": ["hssbench/zh-4"],
                           "ru": ["hssbench/ru-1"], "ar": ["hssbench/ar-1"]}
    # any format: a plain QA file too; items of numbers only, and English with ① or P₂, are English
    plain = [{"question": "中国的首都是哪里?", "answer": "北京"}, {"question": "2 + 2?", "answer": 4},
             {"question": "Order ①②③ in time; is P₂ above P₁?", "answer": "①③②; yes"}]
    caplog.clear()
    assert [i.id for i in read_qa(jsonl(tmp_path / "plain.jsonl", plain))] == ["qa/plain/1", "qa/plain/2"]
    assert "1 item(s) left out as not in English (e.g. qa/plain/0)" in caplog.text
    assert read_qa(tmp_path / "plain.jsonl", language="English-US", limit=1)[0].id == "qa/plain/1"
    with pytest.raises(DataError, match=r"8 item\(s\) left out as not in English.*language=None\); no item is left"):
        read_qa(jsonl(tmp_path / "none.jsonl", HSSBENCH_UN))
    with pytest.raises(DataError, match=r"unknown language 'klingon'; known: en, fr, es, zh, ru, ar, or None .*"
                                        r"--language any") as e:
        read_qa(path, language="klingon")
    assert isinstance(e.value, KameError)


def test_hssbench_questions_with_two_right_options_are_read_and_said(tmp_path):
    # data-open.jsonl holds a few ("correct_answer": "A,D"); the whole file failed to load before
    rec = dict(HSSBENCH[0], id="two-1", correct_answer="A,D")
    (item,) = read_qa(jsonl(tmp_path / "two.jsonl", [rec]))
    assert item.correct == "A,D"
    _, agent = spoken_turns(item)
    opts = item.choices
    assert agent.startswith(f"It's A, {speakable(opts[0]).rstrip('.;, ')} and D, {speakable(opts[3]).rstrip('.;, ')}.")
    with pytest.raises(DataError, match="correct_answer 'Q'"):
        read_qa(jsonl(tmp_path / "bad.jsonl", [dict(rec, correct_answer="A,Q")]))


# Latin-script languages besides French and Spanish (was: an item without French or Spanish small words counted
# as English, so these were kept and spoken by the English voices)
OTHER_LATIN = {
    "de": ("Wie viele Beine hat eine Spinne? Und welcher Fluss fließt durch Berlin?",
           "Eine Spinne hat acht Beine, und die Spree fließt durch die Hauptstadt."),
    "it": ("Quante zampe ha un ragno?", "Un ragno ha otto zampe, e non sei."),
    "pt": ("Quantas pernas tem uma aranha?", "Uma aranha tem oito pernas."),
    "nl": ("Hoeveel poten heeft een spin?", "Een spin heeft acht poten."),
    "tr": ("Bir örümceğin kaç bacağı var?", "Örümceğin sekiz bacağı var."),
    "vi": ("Con nhện có bao nhiêu chân?", "Một con nhện có tám chân."),
    "id": ("Berapa kaki yang dimiliki seekor laba-laba?", "Laba-laba memiliki delapan kaki."),
}
# English questions that name a foreign title, phrase or person stay English
ENGLISH_WITH_FOREIGN = [
    ("What does the German phrase 'Wie geht es dir?' mean?", "It means 'How are you?'."),
    ("Who wrote the novel 'Il nome della rosa'?", "Umberto Eco wrote it in 1980."),
    ("Who painted 'De Nachtwacht', and where is it now?",
     "Rembrandt van Rijn painted it; it is in the Rijksmuseum in Amsterdam."),
    ("Who was Leonardo da Vinci?", "Leonardo da Vinci was an Italian painter of the Renaissance."),
    ("Is 'Die Zauberflöte' an opera by Mozart?", "Yes, Mozart wrote Die Zauberflöte in 1791."),
    ("How do you say 'thank you' in Turkish?", "You say 'teşekkür ederim', or 'sağ ol' among friends."),
    ("Which river flows through Porto, the city famous for its port wine?", "The Douro flows through Porto."),
    ("What is the capital of Côte d'Ivoire, and who was Gödel?", "The capital is Yamoussoukro. Gödel was a logician."),
    # short items with no English small word and one that other languages' lists had ("per", "die", "van", "da",
    # "dan", "ada", "e"): English all the same (review helper-259: 14 of 50 such English items were left out)
    ("Calculate 5 km per hour times 3 hours.", "15 km"),
    ("Dan has 5 apples. Ada gives him 3 more. How many apples does Dan have?", "8"),
    ("Mr. Van der Berg drives 40 miles per day. Miles in a week?", "280"),
    ("Leonardo da Vinci painted Mona Lisa. True or false?", "True"),
    ("Die Zauberflöte: composer?", "Mozart"),
    ("Find e if 2e + 3 = 9.", "3"),
]


def test_items_in_other_latin_script_languages_are_left_out_and_english_with_foreign_names_is_kept(tmp_path, caplog):
    records = [{"id": lang, "question": q, "answer": a} for lang, (q, a) in OTHER_LATIN.items()]
    records += [{"id": f"en{i}", "question": q, "answer": a} for i, (q, a) in enumerate(ENGLISH_WITH_FOREIGN)]
    path = jsonl(tmp_path / "lang.jsonl", records)
    with caplog.at_level(logging.WARNING, logger="kame.train.qa"):
        kept = [i.id for i in read_qa(path)]
    assert kept == [f"qa/lang/en{i}" for i in range(len(ENGLISH_WITH_FOREIGN))]
    assert f"{len(OTHER_LATIN)} item(s) left out as not in English (e.g. qa/lang/de)" in caplog.text
    for lang in ("fr", "es"):  # nor are they French or Spanish
        with pytest.raises(DataError, match="no item is left"):
            read_qa(jsonl(tmp_path / "other.jsonl", records[:len(OTHER_LATIN)]), language=lang)
