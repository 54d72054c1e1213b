"""Table 1, Table 2 and the γ report against hand-computed rows; `ifmsan report` end to end on synthetic files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sweep_fixtures import concat_images, make_sweep, write_sweep

from ifmsan.cli import main
from ifmsan.report import curves, tables
from ifmsan.report import gamma as gamma_report
from ifmsan.report.consistency import check_controller
from ifmsan.report.gamma_markdown import gamma_report_markdown, gamma_summary_markdown
from ifmsan.report.groups import load_image_groups

HAND_PROBS = [0.75, 0.5, 0.375, 0.5, 0.125, 0.25, 0.0625]  # windows 2..8, p0 = 0.75 (see test_metrics)


def curve_with(low: int, mid: int, high: int, *, n: int = 149) -> np.ndarray:
    """n probabilities with exactly low/mid/high distinct values (at 4 decimals) in [0,0.2)/[0.2,0.8)/[0.8,1]."""
    distinct = np.concatenate(
        [0.81 + 0.0035 * np.arange(high), 0.21 + 0.01 * np.arange(mid), 0.001 + 0.0025 * np.arange(low)]
    )[::-1]
    padding = np.full(n - distinct.size, distinct[0])
    return np.concatenate([padding, distinct])[::-1]


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row (header first), stripped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|:- "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def paper_sweeps() -> list:
    """conv1 and pool5 with the distinct counts of the paper's Table 1, given in the wrong order."""
    return [
        make_sweep(curve_with(70, 23, 27), layer="pool5", ifm_size=43264, zero_ratio=38128 / 43264),
        make_sweep(curve_with(9, 0, 2), layer="conv1", ifm_size=154587, zero_ratio=0.0),
    ]


def test_curve_helper_makes_what_it_says() -> None:
    probs = curve_with(70, 23, 27)
    assert probs.size == 149 and len(set(np.round(probs, 4))) == 120


def test_table1_columns_rows_and_formatted_cells() -> None:
    frame = tables.table1(paper_sweeps())
    assert list(frame.columns) == [
        "layer", "eff_san", "n_distinct", "n_range", "distinct_0.0_0.2", "distinct_0.2_0.8", "distinct_0.8_1.0",
        "zero_ratio", "n_zeros", "ifm_size", "eff_san_2", "eff_san_3", "eff_san_4", "eff_san_6", "eff_san_std",
        "zero_ratio_std", "n_images", "model", "knob", "parameter", "decimals", "stand_in",
    ]  # fmt: skip
    assert frame["layer"].tolist() == ["conv1", "pool5"]  # AlexNet order, not input order
    pool5 = frame.set_index("layer").loc["pool5"]
    assert pool5["eff_san"] == pytest.approx(120 / 149)
    assert (pool5["n_distinct"], pool5["n_range"], pool5["n_zeros"], pool5["ifm_size"]) == (120, 149, 38128, 43264)
    assert (pool5["distinct_0.0_0.2"], pool5["distinct_0.2_0.8"], pool5["distinct_0.8_1.0"]) == (70, 23, 27)
    assert pool5["n_images"] == 1 and pool5["eff_san_4"] == pool5["eff_san"]
    rows = markdown_rows(tables.table1_markdown(frame))
    assert rows[0] == [
        "IFM", "eff_san", "distinct p in [0, 0.2)", "distinct p in [0.2, 0.8)", "distinct p in [0.8, 1.0]",
        "ratio of zeros", "eff_san (2 decimals)", "eff_san (3 decimals)", "eff_san (4 decimals)",
        "eff_san (6 decimals)",
    ]  # fmt: skip
    assert rows[1][:6] == ["conv1", "0.07 (11/149)", "9", "0", "2", "0.00 (0/154587)"]
    assert rows[2][:6] == ["pool5", "0.81 (120/149)", "70", "23", "27", "0.88 (38128/43264)"]
    assert rows[2][8] == "0.81 (120/149)"
    assert "Stand-in" in tables.table1_markdown(frame)


def test_table1_extra_decimals_and_layer_order() -> None:
    sweeps = [
        make_sweep([0.5, 0.501, 0.5001, 0.50001, 0.500001], layer="mystery"),
        make_sweep([0.5, 0.4], layer="fc8"),
        make_sweep([0.5, 0.4], layer="conv2"),
    ]
    frame = tables.table1(sweeps)
    assert frame["layer"].tolist() == ["conv2", "fc8", "mystery"]  # unknown layers after AlexNet's
    row = frame.set_index("layer").loc["mystery"]
    assert [row[f"eff_san_{d}"] for d in (2, 3, 4, 6)] == [0.2, 0.4, 0.6, 1.0]
    md = markdown_rows(tables.table1_markdown(frame))
    assert md[3][6:] == ["0.20 (1/5)", "0.40 (2/5)", "0.60 (3/5)", "1.00 (5/5)"]
    assert tables.table1(sweeps, layer_order=["mystery", "fc8"])["layer"].tolist() == ["mystery", "fc8", "conv2"]
    six = tables.table1(sweeps, decimals=6).set_index("layer").loc["mystery"]
    assert six["eff_san"] == 1.0 and six["decimals"] == 6


def test_table1_separates_knobs_and_keeps_scale_sweeps() -> None:
    sweeps = [
        make_sweep([0.9, 0.1], layer="pool5", knob="first"),
        make_sweep([0.9, 0.9], layer="pool5"),
        make_sweep([0.9, 0.5, 0.1], layer="pool5", knob="gaussian", parameter="scale", values=[0.0, 0.5, 1.0]),
    ]
    frame = tables.table1(sweeps)
    assert frame["knob"].tolist() == ["nonzero_mean", "first", "gaussian"]
    assert frame["eff_san"].tolist() == [0.5, 1.0, 1.0]
    assert frame["parameter"].tolist() == ["window", "window", "scale"]
    text = tables.table1_markdown(frame)
    assert text.index("knob nonzero_mean") < text.index("knob first") < text.index("knob gaussian")


def test_many_images_concatenated_or_separate_aggregate_the_same() -> None:
    a = make_sweep([0.9, 0.9, 0.5, 0.5, 0.1], image_id="a", zero_ratio=0.5, p0=0.9)  # 3 distinct / 5
    b = make_sweep([0.8, 0.8, 0.8, 0.4, 0.4], image_id="b", zero_ratio=0.7, p0=0.8)  # 2 distinct / 5
    separate = tables.table1([a, b])
    together = tables.table1([concat_images([a, b])])
    pd.testing.assert_frame_equal(separate, together)
    row = together.iloc[0]
    assert row["n_images"] == 2 and row["eff_san"] == pytest.approx(0.5)
    assert row["eff_san_std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.6 and 0.4
    assert row["n_distinct"] == 2.5 and row["zero_ratio"] == pytest.approx(0.6)
    text = tables.table1_markdown(together)
    cells = markdown_rows(text)[1]
    assert cells[1] == "0.50 ± 0.14" and cells[2:5] == ["0.5", "1", "1"]  # a: 1/1/1, b: 0/1/1
    assert cells[5] == "0.60 ± 0.14"  # zero ratios 0.5 and 0.7
    assert text.count("mean ± sd over 2 images") == 1 and "mean of" not in text  # said once, in the heading
    per_image = tables.table1_per_image([concat_images([a, b])])
    assert per_image["image_id"].tolist() == ["a", "b"] and per_image["eff_san"].tolist() == [0.6, 0.4]


def test_tables_of_several_images_say_mean_and_sd_once_per_table() -> None:
    a = make_sweep([0.9, 0.9, 0.5, 0.5, 0.1], image_id="a", p0=0.9)  # 3 distinct / 5
    b = make_sweep([0.8, 0.8, 0.8, 0.4, 0.4], image_id="b", p0=0.8)  # 2 distinct / 5
    c = make_sweep([0.8, 0.7, 0.6, 0.5, 0.4], image_id="c", p0=0.8)  # 5 distinct / 5
    chained = [make_sweep(s["probability"].values, image_id=s.attrs["image_id"], chain="norm2@3") for s in (a, b, c)]
    frame = tables.table2([a, b, c, *chained])
    text = tables.table2_markdown(frame)
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## alexnet_mini, knob nonzero_mean, swept layer pool5: mean ± sd over 3 images"
    ]
    rows = markdown_rows(text)
    assert "images" not in rows[0] and [row[1] for row in rows[1:]] == ["0.67 ± 0.31"] * 2  # 0.6, 0.4, 1.0
    assert frame["eff_san"].tolist() == pytest.approx([2 / 3] * 2) and frame["n_images"].tolist() == [3, 3]
    assert frame["eff_san_std"].tolist() == pytest.approx([float(np.std([0.6, 0.4, 1.0], ddof=1))] * 2)
    uneven = tables.table1_markdown(tables.table1([a, b, c, make_sweep([0.5, 0.4], layer="fc6", image_id="a")]))
    heading = next(line for line in uneven.splitlines() if line.startswith("## "))
    assert heading.endswith(": mean ± sd over the number of images in column `images`")
    rows = markdown_rows(uneven)
    assert rows[0][:3] == ["IFM", "images", "eff_san"]
    assert rows[1][:3] == ["pool5", "3", "0.67 ± 0.31"] and rows[2][:3] == ["fc6", "1", "1.00 (2/2)"]
    one = tables.table1_markdown(tables.table1([a]))
    assert "mean ± sd over" not in one and "0.60 (3/5)" in one


def test_zero_count_comes_from_the_n_zeros_attr_when_there_is_one() -> None:
    with_count = make_sweep([0.5, 0.4], zero_ratio=0.5, ifm_size=10, n_zeros=3)  # the sweep's own count wins
    without = make_sweep([0.5, 0.4], zero_ratio=0.5, ifm_size=10, layer="fc6")
    del without.attrs["n_zeros"]  # then round(zero_ratio * ifm_size)
    frame = tables.table1([with_count, without]).set_index("layer")
    assert (frame.loc["pool5", "n_zeros"], frame.loc["fc6", "n_zeros"]) == (3, 5)


def test_the_same_sweep_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="same sweep"):
        tables.table1([make_sweep([0.5]), make_sweep([0.4])])


def test_table2_rows_labels_and_order() -> None:
    sweeps = [
        make_sweep(curve_with(57, 28, 49), layer="pool5", chain="norm2@5"),
        make_sweep(curve_with(70, 23, 27), layer="pool5"),
        make_sweep(curve_with(63, 26, 36), layer="pool5", chain="norm2@3"),
        make_sweep([0.5, 0.4], layer="fc6"),  # no chains: not in Table 2
    ]
    frame = tables.table2(sweeps)
    assert list(frame.columns[:11]) == [
        "label", "eff_san", "n_distinct", "n_range", "distinct_0.0_0.2", "distinct_0.2_0.8", "distinct_0.8_1.0",
        "eff_san_2", "eff_san_3", "eff_san_4", "eff_san_6",
    ]  # fmt: skip
    assert frame["label"].tolist() == [
        "pool5 IFM after original norm2 IFM",
        "pool5 IFM after norm2 IFM approximated with the length-3 window",
        "pool5 IFM after norm2 IFM approximated with the length-5 window",
    ]
    assert frame["chain"].tolist() == ["", "norm2@3", "norm2@5"]
    rows = markdown_rows(tables.table2_markdown(frame))
    assert rows[0][:5] == [
        "IFMs", "eff_san", "distinct p in [0, 0.2)", "distinct p in [0.2, 0.8)", "distinct p in [0.8, 1.0]",
    ]  # fmt: skip
    assert rows[1][1:5] == ["0.81 (120/149)", "70", "23", "27"]
    assert rows[2][1:5] == ["0.84 (125/149)", "63", "26", "36"]
    assert rows[3][1:5] == ["0.90 (134/149)", "57", "28", "49"]
    assert tables.table2([make_sweep([0.5, 0.4])]).empty


def test_chain_steps_and_two_step_labels() -> None:
    assert curves.chain_steps("") == ()
    assert curves.chain_steps("norm2@3+pool2@4") == (("norm2", 3), ("pool2", 4))
    for bad in ("norm2", "norm2@0", "norm2@3+", "@3", "norm2@x"):
        with pytest.raises(ValueError, match="chain"):
            curves.chain_steps(bad)
    assert curves.chained_curve_label("pool5", "norm2@3+pool2@4") == (
        "pool5 IFM after norm2 IFM approximated with the length-3 window, then pool2 IFM approximated with the "
        "length-4 window"
    )
    both = curves.chained_curve_label("pool5", "", original=["norm2", "pool2"])
    assert both == "pool5 IFM after original norm2 and pool2 IFMs"


def test_gamma_report_rows_on_the_hand_curve() -> None:
    report = gamma_report.gamma_report([make_sweep(HAND_PROBS, p0=0.75, layer="conv3")], gammas=[1, 4])
    assert list(report.columns) == [
        "model", "image_id", "layer", "chain", "knob", "parameter", "gamma", "p0", "bound", "epsilon_bound", "n_star",
        "reachable", "p_at_n_star", "epsilon_at_n_star", "gamma_max", "range_min", "range_max", "n_range", "inversions",
        "inversion_rise", "n_unsafe", "unsafe", "verdict", "stand_in",
    ]  # fmt: skip
    met, missed = report.iloc[0], report.iloc[1]
    assert (met["gamma"], met["bound"], met["n_star"], met["p_at_n_star"]) == (1.0, 0.375, 4, 0.375)
    assert met["epsilon_at_n_star"] == pytest.approx(math.log(2)) and met["epsilon_bound"] == pytest.approx(math.log(2))
    assert (met["inversions"], met["n_unsafe"], met["unsafe"]) == (2, 1, "5")
    assert met["inversion_rise"] == pytest.approx(0.25)
    assert met["verdict"].startswith("met at n*=4") and "UNSAFE" in met["verdict"]
    assert missed["n_star"] is None and not missed["reachable"] and missed["n_unsafe"] == 0
    assert missed["verdict"].startswith("not reachable in range 2..8")
    assert missed["gamma_max"] == pytest.approx(math.log2(12))
    text = gamma_report_markdown(report)
    assert "Figure 3" in text and "fixes one window size" in text
    cells = markdown_rows(text)
    assert cells[1][cells[0].index("n*")] == "4" and cells[2][cells[0].index("n*")] == "—"
    assert cells[1][cells[0].index("unsafe past n*")] == "1: 5"


def test_gamma_summary_over_images() -> None:
    images = [
        make_sweep(HAND_PROBS, p0=0.75, image_id="a"),  # γ=1: n*=4, unsafe (5,)
        make_sweep([0.75, 0.7, 0.6, 0.2, 0.1, 0.1, 0.1], p0=0.75, image_id="b"),  # γ=1: n*=5, none unsafe
        make_sweep([0.75, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7], p0=0.75, image_id="c"),  # γ=1: not reachable
    ]
    report = gamma_report.gamma_report([concat_images(images)], gammas=[1.0])
    assert report["image_id"].tolist() == ["a", "b", "c"]
    assert report["n_star"].tolist() == [4, 5, None]
    summary = gamma_report.gamma_summary(report)
    row = summary.iloc[0]
    assert (row["n_images"], row["n_reachable"]) == (3, 2)
    assert row["reachable_fraction"] == pytest.approx(2 / 3)
    assert row["n_star_mean"] == 4.5 and row["n_star_std"] == pytest.approx(math.sqrt(0.5))
    assert (row["n_star_min"], row["n_star_max"]) == (4, 5)
    assert row["images_with_unsafe"] == 1 and row["n_unsafe_total"] == 1
    assert row["inversions_total"] == 2  # only image a has inversions
    assert row["verdict"] == "met in 2/3 image(s); n* mean 4.5 (min 4, max 5); UNSAFE values past n* in 1/3 image(s)"
    assert "2/3 (0.67)" in gamma_summary_markdown(summary)


def test_gamma_report_on_a_noise_knob() -> None:
    sweep = make_sweep([0.8, 0.3, 0.5], p0=0.8, knob="laplace", parameter="scale", values=[0.0, 0.5, 1.0])
    row = gamma_report.gamma_report([sweep], gammas=[1.0]).iloc[0]
    assert row["parameter"] == "scale" and row["n_star"] == 0.5 and row["unsafe"] == "1.0"
    assert row["verdict"].startswith("met at scale*=0.5")


def test_malformed_sweeps_are_named_errors() -> None:
    good = make_sweep([0.5, 0.4])
    with pytest.raises(ValueError, match="probability"):
        tables.table1([good.drop_vars("probability")])
    with pytest.raises(ValueError, match="p0"):
        no_p0 = good.copy()
        del no_p0.attrs["p0"]
        gamma_report.gamma_report([no_p0])
    bad = good.copy()
    bad["probability"] = bad["probability"] * 3
    with pytest.raises(ValueError, match=r"sweeps\[0\].*probabilities"):
        tables.table1([bad])
    with pytest.raises(ValueError, match="gamma"):
        gamma_report.gamma_report([good], gammas=[-1])


def write_all(tmp_path: Path, sweeps: list) -> list[str]:
    """Each sweep to its own NetCDF file."""
    return [str(write_sweep(s, tmp_path / f"sweep{i}.nc")) for i, s in enumerate(sweeps)]


def test_report_cli_end_to_end(tmp_path: Path) -> None:
    sweeps = paper_sweeps() + [
        make_sweep(curve_with(63, 26, 36), layer="pool5", chain="norm2@3", zero_ratio=0.9),
        make_sweep(HAND_PROBS, p0=0.75, layer="conv3"),
    ]
    files = write_all(tmp_path, sweeps)
    out = tmp_path / "out"
    assert main(["report", "--sweeps", *files, "--out-dir", str(out), "--gammas", "1", "4"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["table1.csv", "table1.md", "table2.csv", "table2.md", "gamma_report.csv", "gamma_report.md",
         "gamma_summary.csv", "gamma_summary.md"]
    )  # fmt: skip
    table1 = pd.read_csv(out / "table1.csv")
    assert table1["layer"].tolist() == ["conv1", "conv3", "pool5"]
    assert table1.set_index("layer").loc["pool5", "n_distinct"] == 120
    assert "0.88 (38128/43264)" in (out / "table1.md").read_text()
    assert pd.read_csv(out / "table2.csv")["chain"].fillna("").tolist() == ["", "norm2@3"]
    report = pd.read_csv(out / "gamma_report.csv", dtype={"unsafe": str})
    assert len(report) == 4 * 2 and set(report["gamma"]) == {1.0, 4.0}
    conv3 = report[(report["layer"] == "conv3") & (report["gamma"] == 1.0)].iloc[0]
    assert conv3["n_star"] == 4 and conv3["unsafe"] == "5"
    assert "4,True" in (out / "gamma_report.csv").read_text()  # windows stay integers in the CSV
    assert len(pd.read_csv(out / "gamma_summary.csv")) == 8


def test_report_cli_writes_no_table2_without_chains_and_per_image_when_many(tmp_path: Path) -> None:
    sweep = concat_images([make_sweep([0.9, 0.5], image_id="a"), make_sweep([0.9, 0.9], image_id="b")])
    files = write_all(tmp_path, [sweep])
    out = tmp_path / "out"
    assert main(["report", "--sweeps", *files, "--out-dir", str(out), "--decimals", "2"]) == 0
    assert not (out / "table2.csv").exists()
    per_image = pd.read_csv(out / "table1_per_image.csv")
    assert per_image["eff_san"].tolist() == [1.0, 0.5]
    assert pd.read_csv(out / "gamma_report.csv")["gamma"].tolist() == [0.25, 0.5, 1, 2, 3, 4] * 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gammas", "-1"], "gamma"),
        (["--decimals", "-2"], "decimals"),
        (["--sweeps", "missing.nc"], "not found"),
    ],
)
def test_report_cli_rejects_bad_input_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    files = write_all(tmp_path, [make_sweep([0.5, 0.4])])
    out = tmp_path / "out"
    args = ["report", "--sweeps", *files, "--out-dir", str(out), *extra]
    if extra[0] == "--sweeps":
        args = ["report", "--sweeps", str(tmp_path / extra[1]), "--out-dir", str(out)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_report_cli_names_the_file_that_is_not_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notasweep.nc"
    make_sweep([0.5, 0.4]).drop_vars("probability").to_netcdf(path)
    garbage = tmp_path / "garbage.nc"
    garbage.write_text("not netcdf")
    for bad in (path, garbage):
        assert main(["report", "--sweeps", str(bad), "--out-dir", str(tmp_path / "out")]) == 2
        assert bad.name in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def step_curve(n_star: int | None, *, windows: range = range(2, 9), p0: float = 0.8) -> list[float]:
    """p(n) = p0 below n*, 0.3 (< p0/2 = 0.4, so γ = 1 is met) from n* on; never met when n_star is None."""
    return [p0 if n_star is None or n < n_star else 0.3 for n in windows]


FIVE_N_STARS = {"a": 3, "b": 4, "c": 6, "d": 7, "e": 8, "f": None}
"""Five images that meet γ = 1 at known n* and one (f) that never does, windows 2..8."""


def five_image_report() -> pd.DataFrame:
    images = [make_sweep(step_curve(n), p0=0.8, image_id=image) for image, n in FIVE_N_STARS.items()]
    return gamma_report.gamma_report([concat_images(images)], gammas=[1.0])


def test_gamma_summary_quantiles_by_hand() -> None:
    report = five_image_report()
    assert report["n_star"].tolist() == [3, 4, 6, 7, 8, None]
    summary = gamma_report.gamma_summary(report)
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row["group"] == "all"
    # f never meets γ: it counts in the fraction, not in the n* statistics
    assert (row["n_images"], row["n_reachable"]) == (6, 5) and row["reachable_fraction"] == pytest.approx(5 / 6)
    assert (row["n_star_min"], row["n_star_max"]) == (3, 8) and row["n_star_mean"] == pytest.approx(5.6)
    # linear interpolation (Hyndman & Fan type 7) over the sorted [3, 4, 6, 7, 8]: h = 4q, x[⌊h⌋] + (h - ⌊h⌋)·step
    # q05: h = 0.2 -> 3 + 0.2·1 = 3.2; q25: h = 1 -> 4; median: h = 2 -> 6; q75: h = 3 -> 7; q95: h = 3.8 -> 7.8
    expected = {"n_star_q05": 3.2, "n_star_q25": 4.0, "n_star_median": 6.0, "n_star_q75": 7.0, "n_star_q95": 7.8}
    assert {key: row[key] for key in expected} == pytest.approx(expected)
    text = gamma_summary_markdown(summary)
    cells = markdown_rows(text)
    assert "group" not in cells[0]  # no class groups: the column would only say "all"
    assert cells[1][cells[0].index("n* median [q25, q75]")] == "6 [4, 7]"
    assert cells[1][cells[0].index("n* q05–q95")] == "3.2–7.8"
    assert cells[1][cells[0].index("reachable")] == "5/6 (0.83)"
    assert "Hyndman & Fan type 7" in text


def test_gamma_summary_columns_are_stable() -> None:
    summary = gamma_report.gamma_summary(five_image_report())
    assert tuple(summary.columns) == gamma_report.GAMMA_SUMMARY_COLUMNS
    assert gamma_report.GAMMA_SUMMARY_COLUMNS[5:7] == ("gamma", "group")
    for name, _ in gamma_report.N_STAR_QUANTILES:
        assert name in gamma_report.GAMMA_SUMMARY_COLUMNS
    empty = gamma_report.gamma_summary(five_image_report().iloc[0:0])
    assert tuple(empty.columns) == gamma_report.GAMMA_SUMMARY_COLUMNS
    grouped = gamma_report.gamma_summary(five_image_report(), groups=dict.fromkeys(FIVE_N_STARS, "g"))
    assert tuple(grouped.columns) == gamma_report.GAMMA_SUMMARY_COLUMNS


def test_gamma_summary_per_group() -> None:
    groups = {"a": "x", "b": "y", "c": "x", "d": "y", "e": "y", "f": "x", "unused": "z"}
    summary = gamma_report.gamma_summary(five_image_report(), groups=groups)
    assert summary["group"].tolist() == ["all", "x", "y"]  # the rows over all images first, then groups by name
    by_group = summary.set_index("group")
    assert by_group.loc["all", "n_images"] == 6 and by_group.loc["all", "n_star_median"] == 6.0
    x, y = by_group.loc["x"], by_group.loc["y"]
    # x: a (3), c (6), f (never): 2 of 3 reachable; n* statistics over [3, 6] only
    assert (x["n_images"], x["n_reachable"]) == (3, 2) and x["reachable_fraction"] == pytest.approx(2 / 3)
    assert (x["n_star_min"], x["n_star_max"], x["n_star_median"]) == (3, 6, 4.5)
    assert x["n_star_q05"] == pytest.approx(3.15) and x["n_star_q75"] == pytest.approx(5.25)
    assert x["n_star_std"] == pytest.approx(math.sqrt(4.5))
    assert x["verdict"] == "met in 2/3 image(s); n* mean 4.5 (min 3, max 6)"
    # y: b (4), d (7), e (8); linear: q25 h = 0.5 -> 5.5, q95 h = 1.9 -> 7.9
    assert (y["n_images"], y["n_reachable"], y["reachable_fraction"]) == (3, 3, 1.0)
    assert (y["n_star_q25"], y["n_star_median"]) == (5.5, 7.0) and y["n_star_q95"] == pytest.approx(7.9)
    cells = markdown_rows(gamma_summary_markdown(summary))
    assert [row[cells[0].index("group")] for row in cells[1:]] == ["all", "x", "y"]
    assert cells[2][cells[0].index("reachable")] == "2/3 (0.67)"


def test_gamma_summary_group_with_no_reachable_image() -> None:
    groups = {**dict.fromkeys("abcde", "met"), "f": "never"}
    row = gamma_report.gamma_summary(five_image_report(), groups=groups).set_index("group").loc["never"]
    assert (row["n_images"], row["n_reachable"], row["reachable_fraction"]) == (1, 0, 0.0)
    assert row["n_star_min"] is None and math.isnan(row["n_star_median"]) and math.isnan(row["n_star_q95"])
    assert row["verdict"] == "not reachable in range in any of 1 image(s)"


def test_gamma_summary_refuses_bad_groups() -> None:
    report = five_image_report()
    with pytest.raises(ValueError, match=r"2 image\(s\) of the report have no group: 'e', 'f'"):
        gamma_report.gamma_summary(report, groups=dict.fromkeys("abcd", "x"))
    with pytest.raises(ValueError, match="image 'a' has the group 'all', which names the rows over every image"):
        gamma_report.gamma_summary(report, groups={**dict.fromkeys("bcdef", "x"), "a": "all"})
    with pytest.raises(ValueError, match="image 'a' has the group ''; expected a non-empty name"):
        gamma_report.gamma_summary(report, groups={**dict.fromkeys("bcdef", "x"), "a": ""})


def test_load_image_groups(tmp_path: Path) -> None:
    mapping = tmp_path / "groups.yaml"
    mapping.write_text("a: x\nb: y\n")
    assert load_image_groups(mapping) == {"a": "x", "b": "y"}
    config = tmp_path / "config.yaml"
    config.write_text(
        "images:\n  - {id: a, source: skimage:cat, group: x}\n  - {id: b, source: skimage:astronaut, group: y}\n"
    )
    assert load_image_groups(config) == {"a": "x", "b": "y"}
    config.write_text("images:\n  - {id: a, source: skimage:cat, group: x}\n  - {id: b, source: skimage:astronaut}\n")
    with pytest.raises(ValueError, match=r"images\[1\] \('b'\) has no group"):
        load_image_groups(config)
    mapping.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="expected a mapping image_id: group"):
        load_image_groups(mapping)
    mapping.write_text("a: [x\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_image_groups(mapping)


def test_report_cli_with_image_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = [make_sweep(step_curve(n), p0=0.8, image_id=image) for image, n in FIVE_N_STARS.items()]
    files = write_all(tmp_path, [concat_images(images)])
    groups = tmp_path / "groups.yaml"
    groups.write_text("".join(f"{image}: {'x' if image in 'acf' else 'y'}\n" for image in FIVE_N_STARS))
    out = tmp_path / "out"
    args = ["report", "--sweeps", *files, "--out-dir", str(out), "--gammas", "1", "2"]
    assert main([*args, "--image-groups", str(groups)]) == 0
    summary = pd.read_csv(out / "gamma_summary.csv")
    assert summary["group"].tolist() == ["all", "x", "y"] * 2
    assert summary["n_star_median"].tolist()[:3] == [6.0, 4.5, 7.0]
    assert "| group" in (out / "gamma_summary.md").read_text()
    groups.write_text("a: x\n")
    assert main([*args, "--out-dir", str(tmp_path / "out2"), "--image-groups", str(groups)]) == 2
    assert "5 image(s) of the report have no group" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())
    assert main([*args, "--out-dir", str(tmp_path / "out3")]) == 0
    assert pd.read_csv(tmp_path / "out3" / "gamma_summary.csv")["group"].tolist() == ["all", "all"]
    # the workflow's form: one --image-group ID=GROUP per image, winning over the file's entry for that image
    pairs = [arg for image in FIVE_N_STARS for arg in ("--image-group", f"{image}={'x' if image in 'acf' else 'y'}")]
    assert main([*args, "--out-dir", str(tmp_path / "out4"), *pairs]) == 0
    assert pd.read_csv(tmp_path / "out4" / "gamma_summary.csv").equals(summary)
    assert main([*args, "--out-dir", str(tmp_path / "out5"), "--image-group", "a"]) == 2
    assert "--image-group must look like ID=GROUP, got 'a'" in capsys.readouterr().err


def test_gamma_summary_columns_are_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "definitions.md").read_text(encoding="utf-8")
    section = text.split("## The γ summary over images", 1)[1].split("\n## ", 1)[0]
    keys = {"model", "layer", "chain", "knob", "parameter", "gamma"}
    undocumented = [c for c in gamma_report.GAMMA_SUMMARY_COLUMNS if c not in keys and f"`{c}`" not in section]
    assert undocumented == []


def test_controller_check_against_the_sweeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ifmsan report --controller` (the workflow's check of the runtime controller): each row's window must be n*(γ)
    of the image's unchained sweep, 'not reached' where the sweep never meets γ; anything else writes nothing."""
    images = [make_sweep(step_curve(n), p0=0.8, image_id=image) for image, n in FIVE_N_STARS.items()]
    sweeps = [concat_images(images)]
    files = write_all(tmp_path, sweeps)
    rows = [
        {"image_id": image, "model": "alexnet_mini", "layer": "pool5", "knob": "nonzero_mean", "gamma": gamma,
         "window": n if gamma == 1 else None, "status": "met" if n and gamma == 1 else "not reached"}
        for image, n in FIVE_N_STARS.items()
        for gamma in (1.0, 5.0)  # step_curve drops to 0.3 * p0 at n*: γ=1 is met there, γ=5 never
    ]  # fmt: skip
    good = pd.DataFrame(rows)
    assert check_controller(sweeps, good) == 12
    bad = good.copy()
    bad.loc[4, "window"] = 5  # image c at γ = 1 (rows: a 1, a 5, b 1, b 5, c 1, ...): its n*(1) is 6
    with pytest.raises(ValueError, match=r"1 row\(s\):\n  alexnet_mini/c/pool5/nonzero_mean gamma=1.0: controller "
                       r"window 5, sweep n\* 6"):  # fmt: skip
        check_controller(sweeps, bad)
    other = good.assign(layer="fc6")
    with pytest.raises(ValueError, match="(?s)12 row.*no unchained sweep of this image, layer and knob"):
        check_controller(sweeps, other)
    with pytest.raises(ValueError, match="lacks the columns window"):
        check_controller(sweeps, good.drop(columns="window"))
    good.to_csv(tmp_path / "good.csv", index=False)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    args = ["report", "--sweeps", *files, "--gammas", "1"]
    assert main([*args, "--out-dir", str(tmp_path / "ok"), "--controller", str(tmp_path / "good.csv")]) == 0
    assert (tmp_path / "ok" / "gamma_report.csv").is_file()
    assert main([*args, "--out-dir", str(tmp_path / "no"), "--controller", str(tmp_path / "bad.csv")]) == 2
    assert "disagrees with the sweeps' n*(gamma)" in capsys.readouterr().err
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())
    assert main([*args, "--out-dir", str(tmp_path / "no"), "--controller", str(tmp_path / "none.csv")]) == 2
    assert "--controller" in capsys.readouterr().err
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())
