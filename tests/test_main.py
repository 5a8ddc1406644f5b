"""python -m fastnorm: the accuracy verdict, its exit status, the stall warning."""
import numpy as np
import pytest

import fastnorm
from fastnorm import __main__ as cli


def test_accuracy_check_passes():
    passed, lines = cli.check_accuracy()
    assert passed
    assert [line.split()[0] for line in lines] == ["layer_norm", "rms_norm"]


def test_stalled():
    assert cli.stalled(3.1e-3, 1e-3)
    assert not cli.stalled(2.9e-3, 1e-3)
    assert not cli.stalled(0.5e-3, 1e-3)


def test_main_prints_pass_and_exits_zero(capsys):
    assert cli.main(["--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out


def test_main_exits_nonzero_on_fail(monkeypatch, capsys):
    real = fastnorm.layer_norm

    def off_by_one(x, *args, **kwargs):
        return real(x, *args, **kwargs) + np.float32(1)

    monkeypatch.setattr(fastnorm, "layer_norm", off_by_one)
    passed, _ = cli.check_accuracy()
    assert not passed
    assert cli.main(["--quick", "--threads", "1"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "FAIL" in captured.err


def test_main_warns_when_threads_stall(monkeypatch, capsys):
    # Every threaded time 10x the one-thread time: the warning names the remedy.
    monkeypatch.setattr(cli, "stalled", lambda threaded, one: True)
    assert cli.main(["--quick", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "num_threads=1" in out and "set_num_threads(1)" in out


def test_main_rejects_bad_threads():
    with pytest.raises(SystemExit):
        cli.main(["--threads", "0"])


def test_python_dash_m_runs():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "fastnorm", "--quick", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "PASS" in run.stdout
