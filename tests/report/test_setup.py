"""The setup section's rows: this run's facts beside the paper's, with what differences imply."""

from __future__ import annotations

from and_toolkit.experiments.paper import PAPER_SETUP
from and_toolkit.report.setup import IMPLIES, SAME, RunFacts, TargetFacts, setup_items, target_line


def test_one_row_per_target_then_one_per_paper_item() -> None:
    facts = RunFacts(targets=(TargetFacts("ast", "ast", "AST", 0.375, 6962),
                              TargetFacts("fz", "ast-frozen", "BEATs-frozen", 0.80, 46130),
                              TargetFacts("x", "cnn", "BEATs-finetuned")),
                     items={"K": "5 top clips", "captioner": "qwen"}, same=frozenset({"K"}))
    rows = setup_items(facts)
    assert [r.item for r in rows][:3] == ["target ast (stands for AST)",
                                          "target fz (stands for BEATs-frozen)",
                                          "target x (stands for BEATs-finetuned)"]
    assert [r.item for r in rows][3:] == list(PAPER_SETUP)
    ast, fz, x = rows[:3]
    assert "37.5 %" in ast.ours and "6,962" in ast.ours and "95.0 %" in ast.paper
    assert "much weaker" in ast.implication and "shares of its neurons" in ast.implication
    # 80.0 % against the paper's 84.75 %: close; same size: no share remark
    assert "close" in fz.implication and "shares" not in fz.implication
    assert "not recorded" in x.ours and "unknown" in x.implication
    by_item = {r.item: r for r in rows}
    assert by_item["K"].implication == SAME
    assert by_item["captioner"].ours == "qwen"
    assert by_item["captioner"].implication == IMPLIES["captioner"]
    assert by_item["summariser"].ours == "not recorded"


def test_target_line_for_the_index() -> None:
    assert target_line(TargetFacts("cnn", "cnn", "BEATs-finetuned", 0.77)) == (
        "cnn \u2192 BEATs-finetuned: 77.0 % (paper 89.8 %)")
    assert target_line(TargetFacts("a", "ast", "AST")) == "a \u2192 AST: not recorded (paper 95.0 %)"


def test_setup_says_what_of_each_target_was_trained_here() -> None:
    """Only the head (or head and top blocks) of a packaged pretrained network is trained here;
    the row must not say the network was."""
    rows = setup_items(RunFacts(targets=(
        TargetFacts("a", "ast", "AST", 0.4, 6962),
        TargetFacts("y", "yamnet-frozen", "BEATs-frozen", 0.8, 10994),
        TargetFacts("w", "whisper-frozen", "BEATs-frozen", 0.8, 18482),
        TargetFacts("t", "yamnet", "AST", 0.8, 10994)), items={}))
    ours = {r.item.split()[1]: r.ours for r in rows[:4]}
    assert "(ast, trained here)" in ours["a"]
    for frozen in ("y", "w"):
        assert "pretrained weights, frozen; head trained here" in ours[frozen]
    assert "pretrained weights; top blocks and head trained here" in ours["t"]
    assert not any(", trained here)" in ours[k] for k in ("y", "w", "t"))
