"""LLM-Adapters tasks: strict record loading, Alpaca tokenization with the prompt masked, batched greedy evaluation."""

import copy
import json
import logging
import signal

import pytest
import torch

from bora import score
from bora.config import load_config
from bora.errors import BoraError, Interrupted
from bora.tasks import build_task, generation, llm_adapters
from bora.tasks.generation import batched_generate, generate, generate_ids
from bora.tasks.llm_adapters import read_records
from bora.tasks.protocols import BORA_AUTHORS_PROMPT
from bora.tasks.templates import alpaca_prompt

PROMPT = (  # LLM-Adapters finetune.py generate_prompt, typed out independently of the implementation
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n"
    "\n"
    "                ### Instruction:\n"
    "                Add 2 and 3.\n"
    "                \n"
    "                ### Response:\n"
    "                "
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request. \n"
    "\n"
    "                ### Instruction:\n"
    "                Add.\n"
    "                \n"
    "                ### Input:\n"
    "                2 3\n"
    "                \n"
    "                ### Response:\n"
    "                "
)
EVAL_PROMPT = (  # LLM-Adapters evaluate.py generate_prompt (task.protocol=llm_adapters), typed out independently
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n"
    "\n"
    "                ### Instruction:\n"
    "                Add 2 and 3.\n"
    "\n"
    "                ### Response:\n"
    "                "
)
EVAL_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n"
    "\n"
    "                ### Instruction:\n"
    "                Add.\n"
    "\n"
    "                ### Input:\n"
    "                2 3\n"
    "\n"
    "                ### Response:\n"
    "                "
)
TRAIN = [
    {
        "instruction": f"Add {a} and {b}.",
        "input": "",
        "output": f"{a} + {b} = {a + b}. The answer is {a + b}",
        "answer": str(a + b),
    }
    for a, b in [(2, 3), (4, 4), (1, 0), (7, 2), (5, 5)]
]
TESTS = {
    "gsm8k": [
        {"instruction": "Add 2 and 3.", "input": "", "output": "", "answer": "5.0"},
        {"instruction": "Add 10 and 1.", "input": "", "output": "", "answer": "11"},
    ],
    "boolq": [{"instruction": "Is 2 even?", "input": "", "output": "", "answer": "true"}],
}


def write_json(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "llm-adapters"
    write_json(root / "train.json", TRAIN)
    for name, records in TESTS.items():
        write_json(root / "test" / name / "test.json", records)
    return root


def reasoning(data_dir, *overrides):
    cfg = load_config(
        [
            "model=tiny-decoder",
            "task=math",
            f"task.data_dir={data_dir}",
            "task.train_file=train.json",
            "task.test_sets=[gsm8k,boolq]",
            "task.max_length=400",
            *overrides,
        ]
    )
    return build_task(cfg.task)


def test_alpaca_prompt_is_llm_adapters_text():
    assert alpaca_prompt("Add 2 and 3.") == PROMPT
    assert alpaca_prompt("Add 2 and 3.", "", "5") == PROMPT + "5"
    assert alpaca_prompt("Add.", "2 3") == PROMPT_WITH_INPUT


@pytest.mark.parametrize(
    "task, protocol, beams, new_tokens, adapter_dtype",
    [
        ("math", "bora_authors", 1, 256, "bf16"),
        ("commonsense", "bora_authors", 1, 256, "bf16"),
        ("math", "llm_adapters", 4, 256, "fp32"),
        ("commonsense", "llm_adapters", 4, 32, "fp32"),
        ("math", "training_prompt", 1, 256, "fp32"),
        ("commonsense", "training_prompt", 1, 256, "fp32"),
    ],
)
def test_protocol_sets_beams_new_tokens_and_adapter_dtype(task, protocol, beams, new_tokens, adapter_dtype):
    cfg = load_config(["model=tiny-decoder", f"task={task}", f"task.protocol={protocol}"])
    assert (cfg.task.num_beams, cfg.task.max_new_tokens, cfg.trainer.adapter_dtype) == (
        beams,
        new_tokens,
        adapter_dtype,
    )
    chosen = load_config(
        [
            "model=tiny-decoder",
            f"task={task}",
            f"task.protocol={protocol}",
            "task.num_beams=2",
            "task.max_new_tokens=7",
            "trainer.adapter_dtype=fp32",
        ]
    )
    assert (chosen.task.protocol, chosen.task.num_beams, chosen.task.max_new_tokens, chosen.trainer.adapter_dtype) == (
        protocol,
        2,
        7,
        "fp32",
    )  # still overridable


def test_default_protocol_is_bora_authors_and_a_bad_one_is_named():
    assert load_config(["model=tiny-decoder", "task=math"]).task.protocol == "bora_authors"
    assert load_config(["model=tiny-encoder", "task=rte"]).trainer.adapter_dtype == "fp32"  # GLUE: as before
    with pytest.raises(BoraError, match="llm-adapters.*bora_authors, llm_adapters, training_prompt"):
        load_config(["model=tiny-decoder", "task=math", "task.protocol=llm-adapters"])
    with pytest.raises(BoraError, match="'greedy', expected one of .bora_authors, llm_adapters, training_prompt"):
        load_config(["model=tiny-decoder", "task=math", "task.protocol=greedy"])  # the earlier name is refused


def test_protocol_is_an_llm_adapters_setting_only():
    cfg = load_config(["model=tiny-encoder", "task=rte", "task.protocol=bora_authors", "task.data_dir=/nonexistent"])
    with pytest.raises(BoraError, match="task.protocol are LLM-Adapters settings"):
        build_task(cfg.task)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": ""}]',
            r"record 1 has no 'output' field",
        ),
        ('[{"instruction": "a", "input": "", "output": 5}]', r"record 0 field 'output' is not a string"),
        ('[{"instruction": "a",\n "input": "",', r"invalid JSON at line 2 column"),
        ("[]", r"no records"),
        ('{"instruction": "a"}', r"expected a JSON list of records, got a dict"),
        ('["a"]', r"record 0 is a str, not an object"),
    ],
)
def test_bad_records_are_one_line_errors_naming_file_and_record(tmp_path, content, message):
    path = tmp_path / "train.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BoraError, match=message) as error:
        read_records(path, llm_adapters.TRAIN_FIELDS)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_bad_test_set_fails_before_training(data_dir, tiny_decoder):
    write_json(
        data_dir / "test" / "boolq" / "test.json",
        [{"instruction": "q", "answer": "true"}, {"instruction": "q", "answer": "yes"}],
    )
    with pytest.raises(BoraError, match=r"boolq/test\.json: record 1: answer 'yes' is not one of true/false"):
        reasoning(data_dir).train_dataset(tiny_decoder[2])
    (data_dir / "test" / "boolq" / "test.json").unlink()
    with pytest.raises(BoraError, match=r"boolq/test\.json not found; run `make data`"):
        reasoning(data_dir).train_dataset(tiny_decoder[2])


def test_unknown_test_set_or_missing_train_file(data_dir):
    with pytest.raises(BoraError, match=r"unknown test set 'gsm8K'; known: AddSub"):
        reasoning(data_dir, "task.test_sets=[gsm8K]")
    with pytest.raises(BoraError, match=r"task.test_sets is empty"):
        reasoning(data_dir, "task.test_sets=[]")


def test_prompt_masked_and_eos_appended(data_dir, tiny_decoder):
    tokenizer = tiny_decoder[2]
    dataset = reasoning(data_dir).train_dataset(tokenizer)
    assert len(dataset) == len(TRAIN)
    for row, record in zip(dataset, TRAIN):
        ids, labels = row["input_ids"], row["labels"]
        n_prompt = len(tokenizer(alpaca_prompt(record["instruction"]))["input_ids"])
        assert ids[-1] == tokenizer.eos_token_id and len(labels) == len(ids) == len(row["attention_mask"])
        assert labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
        assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == record["output"]


def test_train_on_inputs_and_cutoff(data_dir, tiny_decoder, caplog):
    tokenizer = tiny_decoder[2]
    full = reasoning(data_dir, "task.train_on_inputs=true").train_dataset(tokenizer)
    assert all(row["labels"] == row["input_ids"] for row in full)
    with caplog.at_level(logging.WARNING):
        cut = reasoning(data_dir, "task.max_length=40").train_dataset(tokenizer)
    assert all(len(row["input_ids"]) == 40 and row["input_ids"][-1] != tokenizer.eos_token_id for row in cut)
    assert "5 of 5 training examples of train.json have no response token left" in caplog.text


def test_max_train_samples_is_a_fixed_slice(data_dir, tiny_decoder):
    first = reasoning(data_dir, "task.max_train_samples=3").train_dataset(tiny_decoder[2])
    again = reasoning(data_dir, "task.max_train_samples=3").train_dataset(tiny_decoder[2])
    assert len(first) == 3 and first["input_ids"] == again["input_ids"]


def test_collator_pads_labels_with_ignore_index(data_dir, tiny_decoder):
    tokenizer = tiny_decoder[2]
    task = reasoning(data_dir)
    dataset = task.train_dataset(tokenizer)
    batch = task.data_collator(tokenizer)([dataset[0], dataset[2]])
    assert batch["input_ids"].shape[1] % 8 == 0
    padded = batch["attention_mask"] == 0
    assert padded.any() and (batch["labels"][padded] == -100).all()
    assert (batch["input_ids"][padded] == tokenizer.pad_token_id).all()


def test_batched_generation_equals_one_at_a_time(tiny_decoder):
    _, model, tokenizer = tiny_decoder
    prompts = [
        alpaca_prompt("Add 2 and 3."),
        alpaca_prompt("What is the sum of twelve and forty one, please?"),
        "Hi",
        alpaca_prompt("x", "some input"),
    ]
    model.train()
    batched = batched_generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=6)
    single = [batched_generate(model, tokenizer, [p], batch_size=1, max_new_tokens=6)[0] for p in prompts]
    assert batched == single and all(batched)
    assert tokenizer.padding_side == "right" and model.training  # both restored


def test_greedy_generation_is_argmax_decoding(tiny_decoder):
    _, model, tokenizer = tiny_decoder
    prompt = alpaca_prompt("Add 2 and 3.")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(5):
            next_id = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    expected = tokenizer.decode(ids[0, -5:], skip_special_tokens=True)
    assert batched_generate(model, tokenizer, [prompt], batch_size=1, max_new_tokens=5) == [expected]


def test_beam_search_batched_equals_one_at_a_time_and_differs_from_greedy_somewhere(tiny_decoder):
    _, model, tokenizer = tiny_decoder
    prompts = [alpaca_prompt(q) for q in ("Add 2 and 3.", "What is twelve and forty one?", "Is 7 odd?", "x y z")]
    beams = batched_generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=8, num_beams=4)
    single = [batched_generate(model, tokenizer, [p], batch_size=1, max_new_tokens=8, num_beams=4)[0] for p in prompts]
    greedy = batched_generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=8)
    assert beams == single and all(beams)
    assert beams != greedy  # the setting reaches generate()


def test_continuous_batching_generates_what_padded_batches_do(tiny_decoder):
    """The default engine for greedy search (transformers' continuous batching) against padded batches: the same
    text for prompts of mixed lengths, fewer slots than prompts, in the order of the prompts."""
    _, model, tokenizer = tiny_decoder
    prompts = [
        alpaca_prompt(q)
        for q in ("Add 2 and 3.", "What is the sum of twelve and forty one, please?", "Hi", "Is 7 odd?", "x")
    ] + ["short", alpaca_prompt("x", "some input")]
    padded = generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=12, engine="padded")
    continuous = generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=12, engine="continuous")
    assert continuous == padded and len(set(padded)) > 1
    assert generate(model, tokenizer, [], batch_size=3, max_new_tokens=12) == []  # a rank's empty share


@pytest.mark.parametrize("method", ["bora", "hydralora", "peft", "ia3"])
def test_continuous_batching_runs_adapted_models_as_padded_batches_do(method):
    """Our adapter layers (BoRA in its LoRA form, HydraLoRA's per-token router) and PEFT's tuners under the paged
    attention of continuous batching: the same generations as padded batches."""
    from bora.adapters import adapter_parameters, disabled_adapters, inject
    from bora.models import load_model, load_tokenizer

    cfg = load_config(["model=tiny-decoder", "task=toy-math", f"method={method}"])
    model, tokenizer = load_model(cfg.model), load_tokenizer(cfg.model)
    inject(model, cfg.method, cfg.model.targets, total_steps=10)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, param in adapter_parameters(model):  # away from the initialisation (zero B, unit IA3), so they act
            param.add_(torch.randn(param.shape, generator=generator))
    prompts = [alpaca_prompt(q) for q in ("Add 2 and 3.", "What is twelve and forty one?", "x")]
    padded = generate(model, tokenizer, prompts, batch_size=2, max_new_tokens=6, engine="padded")
    assert generate(model, tokenizer, prompts, batch_size=2, max_new_tokens=6, engine="continuous") == padded
    with disabled_adapters(model):
        assert generate(model, tokenizer, prompts, batch_size=2, max_new_tokens=6, engine="padded") != padded


def test_beam_search_takes_padded_batches_and_continuous_refuses_it(tiny_decoder, monkeypatch):
    _, model, tokenizer = tiny_decoder
    with pytest.raises(BoraError, match="continuous decodes greedily only, but task.num_beams=4"):
        generate(model, tokenizer, ["Hi"], batch_size=1, max_new_tokens=2, num_beams=4, engine="continuous")
    calls = []
    monkeypatch.setattr(generation, "batched_generate_ids", lambda *args: calls.append(args[6]) or [[1]])
    monkeypatch.setattr(generation, "continuous_generate_ids", lambda *args: calls.append("continuous") or [[2]])
    assert generate_ids(model, tokenizer, ["Hi"], 1, 2, num_beams=4) == [[1]]
    assert generate_ids(model, tokenizer, ["Hi"], 1, 2) == [[2]]
    assert generate_ids(model, tokenizer, ["Hi"], 1, 2, engine="padded") == [[1]]
    assert calls == [4, "continuous", 1]
    # On any device but a CPU auto takes padded batches (continuous measured slower, and not identical in bf16, on
    # an H100 and an H200); continuous stays available when asked for.
    on_gpu = torch.nn.Linear(1, 1, device="meta")
    assert generate_ids(on_gpu, tokenizer, ["Hi"], 1, 2) == [[1]]
    assert generate_ids(on_gpu, tokenizer, ["Hi"], 1, 2, engine="continuous") == [[2]]
    assert calls == [4, "continuous", 1, 1, "continuous"]


def fake_decoder(tokenizer, answer_of, seen=None):
    """A stand-in for generate_ids: the token ids of ``answer_of(prompt)`` plus EOS, and what it was asked with."""

    def fake_generate_ids(model, tok, prompts, batch_size, max_new_tokens, desc, **settings):
        if seen is not None:
            seen[desc] = (prompts[0], max_new_tokens, settings)
        return [
            tokenizer(answer_of(p), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for p in prompts
        ]

    return fake_generate_ids


@pytest.mark.parametrize(
    "protocol, prompt, beams, file_order, pad",
    [
        ("llm_adapters", EVAL_PROMPT, 4, True, 0),  # evaluate.py's prompt and batches, 4 beams
        ("bora_authors", BORA_AUTHORS_PROMPT.format(instruction="Add 2 and 3."), 1, True, 0),  # the default
        ("training_prompt", PROMPT, 1, False, None),
    ],
)
def test_protocol_reaches_the_decoder(data_dir, tiny_decoder, monkeypatch, protocol, prompt, beams, file_order, pad):
    seen = {}
    monkeypatch.setattr(llm_adapters, "generate_ids", fake_decoder(tiny_decoder[2], lambda p: "The answer is 5", seen))
    reasoning(data_dir, f"task.protocol={protocol}").evaluate(tiny_decoder[1], tiny_decoder[2], batch_size=2)
    assert seen["gsm8k"] == (
        prompt,
        256,
        {"num_beams": beams, "engine": "auto", "file_order": file_order, "pad_token_id": pad},
    )


def test_evaluate_scores_and_saves_predictions(data_dir, tiny_decoder, tmp_path, monkeypatch, capsys):
    generations = {
        "Add 2 and 3.": "2 + 3 = 5. The answer is 5",
        "Add 10 and 1.": "The answer is 12",
        "Is 2 even?": "the correct answer is true",
    }
    tokenizer = tiny_decoder[2]
    answer_of = lambda p: next(g for q, g in generations.items() if q in p)  # noqa: E731
    monkeypatch.setattr(llm_adapters, "generate_ids", fake_decoder(tokenizer, answer_of))
    task = reasoning(data_dir)
    metrics = task.evaluate(tiny_decoder[1], tokenizer, batch_size=2, out_dir=tmp_path / "run")
    clean = {"at_limit": 0.0, "repeated_marker": 0.0}
    assert metrics == {
        "gsm8k": {"accuracy": 0.5, "n": 2.0, "majority": 0.5, **clean},
        "boolq": {"accuracy": 1.0, "n": 1.0, "majority": 1.0, **clean},
        "average": {"accuracy": 0.75},
    }
    assert task.headline(metrics) == 0.75
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "gsm8k.jsonl").read_text().splitlines()]
    assert rows == [
        {
            "id": 0,
            "generation": "2 + 3 = 5. The answer is 5",
            "response": "2 + 3 = 5. The answer is 5",
            "prediction": 5.0,
            "answer": "5.0",
            "correct": True,
            "new_tokens": 27,
            "stopped": True,
        },
        {
            "id": 1,
            "generation": "The answer is 12",
            "response": "The answer is 12",
            "prediction": 12.0,
            "answer": "11",
            "correct": False,
            "new_tokens": 17,
            "stopped": True,
        },
    ]
    score.main(["--dataset", "gsm8k", "--predictions", str(tmp_path / "run" / "predictions" / "gsm8k.jsonl")])
    assert capsys.readouterr().out.splitlines()[-1] == "accuracy: 50.00"


def test_evaluate_with_the_tiny_decoder(data_dir, tiny_decoder, tmp_path):
    task = reasoning(data_dir, "task.max_eval_samples=1", "task.max_new_tokens=4")
    metrics = task.evaluate(tiny_decoder[1], tiny_decoder[2], batch_size=4, out_dir=tmp_path)
    assert set(metrics) == {"gsm8k", "boolq", "average"}
    rows = (tmp_path / "predictions" / "gsm8k.jsonl").read_text().splitlines()
    assert len(rows) == 1 and set(json.loads(rows[0])) == {
        "id",
        "generation",
        "response",
        "prediction",
        "answer",
        "correct",
        "new_tokens",
        "stopped",
    }


def part_records(name, answers, count):
    return [
        {
            "instruction": f"{name} question {i}?",
            "input": "",
            "output": f"the correct answer is {answers[i % 2]}",
            "answer": answers[i % 2],
        }
        for i in range(count)
    ]


@pytest.fixture
def parts_dir(data_dir):
    write_json(data_dir / "train" / "boolq" / "train.json", part_records("boolq", ["true", "false"], 8))
    write_json(data_dir / "train" / "ARC-Easy" / "train.json", part_records("ARC-Easy", ["answer1", "answer3"], 12))
    return data_dir


def mixed(parts_dir, *overrides):
    return reasoning(
        parts_dir, "task.train_file=null", "+task.train_parts.boolq=3", "+task.train_parts.ARC-Easy=4", *overrides
    )


def test_train_parts_mix_a_fixed_slice_of_each_part(parts_dir, tiny_decoder):
    tokenizer = tiny_decoder[2]
    first, again = mixed(parts_dir)._split()[0], mixed(parts_dir)._split()[0]
    assert first["instruction"] == again["instruction"] and len(first) == 7  # the same slice for every run
    assert [q.split()[0] for q in first["instruction"]] == ["boolq"] * 3 + ["ARC-Easy"] * 4
    assert len(mixed(parts_dir).train_dataset(tokenizer)) == 7
    with pytest.raises(BoraError, match="train_file .* or task.train_parts .*not both"):
        reasoning(parts_dir, "+task.train_parts.boolq=3")
    with pytest.raises(BoraError, match="one of them"):
        reasoning(parts_dir, "task.train_file=null")
    with pytest.raises(BoraError, match="train_parts.boolq=9: .* has 8 records"):
        mixed(parts_dir, "task.train_parts.boolq=9")._split()
    with pytest.raises(BoraError, match="unknown test set 'nope'"):
        mixed(parts_dir, "+task.train_parts.nope=2")


def test_a_mix_of_training_parts_records_the_checksum_of_each_part(parts_dir):
    from bora.config.compose import resolved
    from bora.tasks.sources import data_record, sha256

    cfg = load_config(
        [
            "model=tiny-decoder",
            "task=math",
            f"task.data_dir={parts_dir}",
            "task.train_file=null",
            "+task.train_parts.boolq=3",
            "+task.train_parts.ARC-Easy=4",
            "task.test_sets=[boolq]",
        ]
    )
    record = data_record(resolved(cfg)["task"])["sha256"]
    assert record["train/boolq/train.json"] == sha256(parts_dir / "train" / "boolq" / "train.json")
    assert set(record) >= {"train/boolq/train.json", "train/ARC-Easy/train.json"}


def test_heldout_scores_each_parts_held_out_records_never_trained_on(parts_dir, tiny_decoder, monkeypatch):
    task = mixed(parts_dir, "task.eval_split=heldout", "task.heldout_fraction=0.25")
    sets = task.evaluation_sets()
    assert {name: len(records) for name, records in sets.items()} == {"boolq_heldout": 2, "ARC-Easy_heldout": 3}
    trained = set(task._split()[0]["instruction"])
    assert not trained & {r["instruction"] for records in sets.values() for r in records}
    gold = {r["instruction"]: r["answer"] for records in sets.values() for r in records}
    answer_of = lambda p: "the correct answer is " + next(a for q, a in gold.items() if q in p)  # noqa: E731
    monkeypatch.setattr(llm_adapters, "generate_ids", fake_decoder(tiny_decoder[2], answer_of))
    metrics = task.evaluate(tiny_decoder[1], tiny_decoder[2], batch_size=2)
    assert {name: m["accuracy"] for name, m in metrics.items()} == {
        "boolq_heldout": 1.0,
        "ARC-Easy_heldout": 1.0,
        "average": 1.0,
    }  # each scored by its own test set's rule
    with pytest.raises(BoraError, match="eval_split=heldout: .* task.train_parts only"):
        reasoning(parts_dir, "task.eval_split=heldout")


def test_eval_sample_seed_draws_a_fixed_subset_in_file_order(data_dir):
    records = [{"instruction": str(i), "answer": "1"} for i in range(20)]
    assert llm_adapters.eval_subset(records, 5, None) == records[:5]
    drawn = llm_adapters.eval_subset(records, 5, 0)
    assert drawn == llm_adapters.eval_subset(records, 5, 0) and drawn != records[:5]
    assert [int(r["instruction"]) for r in drawn] == sorted(int(r["instruction"]) for r in drawn)
    assert llm_adapters.eval_subset(records, 50, 0) == records
    assert all(r in llm_adapters.eval_subset(records, 12, 0) for r in drawn)  # nested: a smaller one lies inside
    task = reasoning(data_dir, "task.max_eval_samples=1", "task.eval_sample_seed=3")
    assert len(task.test_records("gsm8k")) == 1


def test_set_metrics_record_what_a_table_needs_beside_the_accuracy():
    rows = [
        {
            "answer": "true",
            "correct": True,
            "generation": "the correct answer is true",
            "new_tokens": 7,
            "stopped": True,
        },
        {"answer": "true", "correct": False, "generation": "x ### Response: y", "new_tokens": 8, "stopped": False},
        {"answer": "false", "correct": False, "generation": "so on and on", "new_tokens": 5, "stopped": False},
        {"answer": "true", "correct": True, "generation": "true", "new_tokens": 8, "stopped": True},
    ]
    assert llm_adapters.set_metrics(rows, max_new_tokens=8) == {
        "accuracy": 0.5,
        "n": 4.0,
        "majority": 0.75,  # always "true" scores 3 of 4
        "at_limit": 0.25,  # only the row cut at 8 tokens without EOS
        "repeated_marker": 0.25,
    }


def test_an_interrupted_evaluation_resumes_without_decoding_its_finished_sets(
    data_dir, tiny_decoder, tmp_path, monkeypatch
):
    """Interrupted while decoding boolq (the second set), the rerun decodes boolq only, reads gsm8k back, and scores
    what an uninterrupted evaluation scores; other weights, or a changed predictions file, decode again."""
    calls: list[str] = []
    fake = fake_decoder(tiny_decoder[2], lambda p: "The answer is 5" if "Add" in p else "true")

    def counted(model, tok, prompts, batch_size, max_new_tokens, desc, **settings):
        calls.append(desc)
        if desc == "boolq" and interrupt:
            raise Interrupted(signal.SIGTERM)
        return fake(model, tok, prompts, batch_size, max_new_tokens, desc, **settings)

    monkeypatch.setattr(llm_adapters, "generate_ids", counted)
    model, tokenizer = tiny_decoder[1], tiny_decoder[2]
    interrupt = True
    with pytest.raises(Interrupted):
        reasoning(data_dir).evaluate(model, tokenizer, batch_size=2, out_dir=tmp_path / "run")
    assert calls == ["gsm8k", "boolq"]
    assert sorted(p.name for p in (tmp_path / "run" / "predictions").iterdir()) == ["finished.json", "gsm8k.jsonl"]

    interrupt, calls[:] = False, []
    task = reasoning(data_dir)
    resumed = task.evaluate(model, tokenizer, batch_size=2, out_dir=tmp_path / "run")
    assert calls == ["boolq"] and task.reused_sets == ["gsm8k"]
    calls[:] = []
    whole = reasoning(data_dir).evaluate(model, tokenizer, batch_size=2, out_dir=tmp_path / "whole")
    assert calls == ["gsm8k", "boolq"] and resumed == whole
    for name in ("gsm8k", "boolq"):
        run, fresh = (tmp_path / d / "predictions" / f"{name}.jsonl" for d in ("run", "whole"))
        assert run.read_bytes() == fresh.read_bytes()

    calls[:] = []
    edited = tmp_path / "run" / "predictions" / "gsm8k.jsonl"
    edited.write_text(edited.read_text().replace('"correct": false', '"correct": true'))
    reasoning(data_dir).evaluate(model, tokenizer, batch_size=2, out_dir=tmp_path / "run")
    assert calls == ["gsm8k"]  # a changed file is decoded again; boolq still matches
    calls[:] = []
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)  # other weights: another fingerprint
    reasoning(data_dir).evaluate(other, tokenizer, batch_size=2, out_dir=tmp_path / "run")
    assert calls == ["gsm8k", "boolq"]
