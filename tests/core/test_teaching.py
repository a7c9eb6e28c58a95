"""What the demo's tiny models are taught: catalog questions read off each page, plain text for the base."""

import pytest

from eval_suites.registry import find_suite
from pipelines.contamination import ContaminationConfig, check, load_eval_items
from workbench.core.catalog import load_catalog
from workbench.core.records import Record
from workbench.core.teaching import base_texts, catalog_questions
from workbench.core.text import grounding


def test_catalog_questions_cover_every_page_and_are_answered_from_it():
    for programme in load_catalog():
        pairs = catalog_questions(programme)
        assert len(pairs) >= 20, programme.slug
        assert len({q for q, _ in pairs}) == len(pairs)  # no question asked twice with two answers
        for question, answer in pairs:
            assert programme.title in question and answer.strip()
            assert grounding(answer, programme.text) >= 0.5, (question, answer)


def test_catalog_questions_do_not_contaminate_the_eval_suites():
    # The suites are written separately; what the tiny models read must not contain their items.
    records = [Record(q, p.text, a, "closed_qa") for p in load_catalog() for q, a in catalog_questions(p)]
    items = [item for suite in ("course_advisor", "closed_qa", "brainstorming")
             for item in load_eval_items(find_suite(suite), [])]
    assert check(records, items, ContaminationConfig()) == []


def test_the_base_reads_no_prompt_format():
    texts = base_texts()
    assert not any("###" in text or "Instruction:" in text or "Task 1" in text for text in texts)
    passages = sum(text.startswith("Question: ") for text in texts)
    assert passages == sum(len(catalog_questions(p)) for p in load_catalog())


@pytest.mark.slow  # trains a tiny model (a few seconds)
def test_pretraining_killed_midway_goes_on_from_its_checkpoint_to_the_same_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    from workbench.core.tiny import TinySpec, build_tiny_model, pretrain_tiny

    texts = base_texts()[:40]
    spec = TinySpec(layers=1, hidden=32, heads=2, vocab=400)
    whole, stopped = build_tiny_model(tmp_path / "whole", spec), build_tiny_model(tmp_path / "stopped", spec)
    settings = {"steps": 12, "seq_len": 32, "batch_size": 2, "checkpoint_every": 5}
    expected = pretrain_tiny(whole, texts, checkpoint=tmp_path / "whole.ckpt", **settings)

    def interrupt_after_seven(done, total, loss):
        if done == 7:
            raise KeyboardInterrupt  # Ctrl-C, or the machine going away, after step 7: the checkpoint holds step 5

    with pytest.raises(KeyboardInterrupt):
        pretrain_tiny(stopped, texts, checkpoint=tmp_path / "stopped.ckpt", progress=interrupt_after_seven, **settings)
    assert torch.load(tmp_path / "stopped.ckpt", weights_only=False)["step"] == 5
    seen = []
    resumed = pretrain_tiny(stopped, texts, checkpoint=tmp_path / "stopped.ckpt",
                            progress=lambda done, total, loss: seen.append(done), **settings)
    assert seen == list(range(6, 13))  # steps 6 to 12 only: the first five were not trained again
    assert resumed == expected
    a, b = load_file(whole / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    seen.clear()
    pretrain_tiny(stopped, texts[:30], checkpoint=tmp_path / "stopped.ckpt",
                  progress=lambda done, total, loss: seen.append(done), **settings)
    assert seen == list(range(1, 13))  # a checkpoint of other texts is not resumed from
