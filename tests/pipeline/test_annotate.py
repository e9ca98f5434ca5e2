"""`flaudit annotate` over a scored run: the items people judge, answers that leave the manifest
intact, export to SemSim's annotations (trainable), and agreement with each other and the oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fl_sim.run_store import RunStore
from flaudit.errors import FlauditError
from pipeline.annotators import annotation_source
from pipeline.cli import main
from semsim.annotate.report import agreement_stats, collect, oracle_judgements
from semsim.annotate.session import Session
from semsim.data import read_annotations
from semsim.oracle import candidate_classes


def answer_all(run: Path, people: dict[str, object]) -> Session:
    """Each person answers every item they are offered: `people[name](item) -> choice`."""
    session = Session([annotation_source(RunStore(run))], capacity=len(people))
    for name, rule in people.items():
        while (shown := session.next(name)) is not None:
            session.submit(name, shown.id, rule(shown.item), 800)  # type: ignore[operator]
    return session


def truthful(item):  # type: ignore[no-untyped-def]
    """Names the true class of a good reconstruction (round 1), calls noise unrecognisable."""
    return str(item.label) if item.id.split(":")[2] == "1" else "unrecognisable"


def test_the_items_are_the_audits_pairs_with_the_oracles_candidates(scored_run: Path) -> None:
    store = RunStore(scored_run)
    source = annotation_source(store)
    assert len(source.items) == 12 and source.problems == () and source.dataset == "digits" and source.variant == "annotated"
    records = [json.loads(line) for line in (scored_run / "metrics.jsonl").read_text().splitlines()]
    first, record = source.items[0], records[0]
    assert first.reconstruction == scored_run / "attacks/dlg/round_001/client_000" / f"{record['position']}_{record['label']}_rec.png"
    assert (first.label, first.key) == (record["label"], record["index"])
    expected = candidate_classes(torch.tensor([first.label]), num_classes=10, keys=torch.tensor([first.key]))[0].tolist()
    assert list(first.candidates) == expected
    assert [c.label for c in first.choices(source.class_names)][-1] == "unrecognisable"
    assert all(item.candidates == () and item.id.startswith("pair:") for item in annotation_source(store, mode="pair").items)

    first.reconstruction.write_bytes(first.reconstruction.read_bytes() + b"x")  # altered after the audit
    again = annotation_source(store)
    assert len(again.items) == 11 and "SHA-256 differs" in again.problems[0] and str(first.reconstruction) in again.problems[0]


def test_an_unscored_run_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create("name: x\ndata: {dataset: digits}\n", seed=0)
    with pytest.raises(FlauditError, match=r"metrics.jsonl: missing; score the run first \(`flaudit audit"):
        annotation_source(store)


def test_answers_leave_verify_clean_and_export_trains_semsim(scored_run: Path, tmp_path: Path, capsys) -> None:
    answer_all(scored_run, {"alice": truthful, "bob": truthful, "carol": lambda item: "unrecognisable"})
    assert RunStore(scored_run).verify() == []
    assert main(["verify", str(scored_run)]) == 0
    capsys.readouterr()

    out, release = tmp_path / "people.jsonl", tmp_path / "release"
    assert main(["annotate", "export", str(scored_run), "--out", str(out), "--release", str(release)]) == 0
    printed = capsys.readouterr().out
    assert f"36 answers of 3 people -> {out}" in printed and "12 majority labels (0 tied items left out)" in printed
    loaded = read_annotations(out)
    assert loaded.problems == () and len(loaded.annotations) == 36
    assert {a.annotator for a in loaded.annotations} == {"alice", "bob", "carol"}
    alice = [a for a in loaded.annotations if a.annotator == "alice"]
    assert sum(a.recognisable for a in alice) == 6 and all(a.dataset == "digits" and a.attack == "dlg" and not a.identity for a in alice)
    assert all(Path(a.reconstruction).is_file() and a.time.endswith("Z") for a in alice)
    # The release layout holds the majority: round 1's six good reconstructions in N/, the noise in -N/.
    positives = [p for p in (release / "train_with_ori").glob("[0-9]*/*_rec.png")]
    negatives = [p for p in (release / "train_with_ori").glob("-*/*_rec.png")]
    assert (len(positives), len(negatives)) == (6, 6)

    assert main(["annotate", "export", str(scored_run), "--out", str(tmp_path / "majority.jsonl"), "--majority"]) == 0
    majority = read_annotations(tmp_path / "majority.jsonl").annotations
    assert len(majority) == 12 and {a.annotator for a in majority} == {"majority"}

    checkpoint = tmp_path / "semsim.pt"
    assert main(["-q", "semsim", "train", "--annotations", str(out), "--backbone", "lenet", "--epochs", "1", "--input-size", "8",
                 "--pretrained", "none", "--val-fraction", "0", "--out", str(checkpoint)]) == 0
    assert checkpoint.is_file()


def test_stats_between_people_and_against_the_oracle(scored_run: Path, digits_oracle, capsys) -> None:
    answer_all(scored_run, {"alice": truthful, "bob": truthful, "carol": lambda item: "unrecognisable"})
    assert main(["annotate", "stats", str(scored_run), "--no-oracle", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["class"]
    assert stats["answers"] == 36 and stats["items"] == 12
    assert {name: p["answers"] for name, p in stats["annotators"].items()} == {"alice": 12, "bob": 12, "carol": 12}
    assert stats["annotators"]["alice"]["recognised"] == 0.5 and stats["annotators"]["carol"]["recognised"] == 0.0
    pairs = {tuple(p["who"]): p for p in stats["people"]["pairs"]}
    assert pairs[("alice", "bob")]["percent"] == 1.0 and pairs[("alice", "bob")]["cohen_kappa"] == 1.0
    assert pairs[("alice", "carol")]["percent"] == 0.5 and pairs[("alice", "carol")]["cohen_kappa"] == 0.0
    # Six items all agree (noise), six split 2:1: pairwise agreement (6 * 1 + 6 * 1/3) / 12 = 2/3; 12 of the
    # 36 judgements say recognised, so chance agreement is (1/3)^2 + (2/3)^2 = 5/9 and kappa (2/3 - 5/9) / (4/9).
    assert stats["people"]["recognised"]["percent"] == pytest.approx(2 / 3)
    assert stats["people"]["recognised"]["fleiss_kappa"] == pytest.approx(0.25)
    assert stats["oracle"] is None

    assert main(["annotate", "stats", str(scored_run), "--no-oracle"]) == 0
    text = capsys.readouterr().out
    assert "class mode (pick the category): 36 answers by 3 people on 12 items of 1 run(s)" in text
    assert "alice ~ bob: 12 items, agreement 1.00, Cohen's kappa 1.00" in text and "not computed (no oracle)" in text

    judged, notes = collect([annotation_source(RunStore(scored_run))])
    assert notes == []
    items = list({j.item.id: j.item for j in judged}.values())
    oracle = {(scored_run, item): value for item, value in oracle_judgements(items, digits_oracle).items()}
    # The oracle recognises the near-perfect round and none of the noise, as alice and bob did.
    assert sorted(oracle.values()) == [False] * 6 + [True] * 6
    against = {o["who"]: o for o in agreement_stats(judged, oracle)["class"]["oracle"]}
    assert against["alice"]["percent"] == 1.0 and against["carol"]["percent"] == 0.5 and against["majority"]["items"] == 12


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["annotate", "RUN", "--host", "0.0.0.0"], "--host 0.0.0.0: not a loopback address"),
        (["annotate", "export", "RUN"], "give --out FILE"),
        (["annotate", "stats", "RUN", "--port", "9000"], "--port belong(s) to another action"),
        (["annotate", "export"], "give at least one RUN_DIR"),
        (["annotate", "stats", "RUN"], "annotations/answers.sqlite: missing; nobody has annotated"),
    ],
)
def test_command_line_mistakes_are_one_clear_error(scored_run: Path, argv: list[str], message: str, capsys) -> None:
    argv = [str(scored_run) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_audit_uses_peoples_judgements_and_says_so(scored_run: Path, digits_oracle) -> None:
    """Where people judged an image, the audit's "recognised" is theirs (their majority), and each
    round says how many of its judgements are people's; the rest stay the oracle's."""
    import json

    from audit.report import round_table
    from audit.scorer import score_run
    from pipeline.annotators import people_judgements

    # Two people agree that every round-1 reconstruction is unrecognisable, against the truth.
    answer_all(scored_run, {"ann": lambda item: "unrecognisable", "bob": lambda item: "unrecognisable"})
    store = RunStore(scored_run)
    people = people_judgements(store)
    assert len(people) == 12 and not any(people.values())
    audits = score_run(store, metrics=("mse", "psnr"), oracle=digits_oracle, device="cpu", download=False, people=people).audits
    by_round = {a.round: a for a in audits}
    assert by_round[1].recognised_by == {"people": 6} and by_round[1].recognised_fraction == 0.0
    assert "(6 by people)" in round_table(audits) and "recognised (people, else oracle)" in round_table(audits)
    records = [json.loads(line) for line in (scored_run / "metrics.jsonl").read_text().splitlines()]
    assert {r["recognised_by"] for r in records} == {"people"} and not any(r["recognised"] for r in records)
    # Without answers the oracle judges alone, and its round-1 verdict differs from the people's.
    alone = score_run(store, metrics=("mse", "psnr"), oracle=digits_oracle, device="cpu", download=False, write=False).audits
    assert {a.round: a.recognised_by for a in alone} == {1: {"oracle": 6}, 2: {"oracle": 6}}
    assert alone[0].recognised_fraction > 0.5
