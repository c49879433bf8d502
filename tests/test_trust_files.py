"""Special files as attachments: a pipe nobody writes to, a silent writer, devices; and Ctrl-C
inside a slash command, which cancels that command and never the session."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pexpect
import pytest

from chatcli import attachments, errors
from tests.conftest import TEST_KEY
from tests.fake_server import Reply
from tests.terminal import BIN, PROMPT, expect, spawn


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_a_named_pipe_nobody_writes_to_is_refused_at_once_not_waited_on(endpoint, tmp_path, fifo):
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": TEST_KEY,
           "CHATCLI_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([str(BIN), "ask", "-f", str(fifo), "what is this?"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == errors.EXIT_USAGE
    assert "it is a pipe and nothing was written to it" in done.stderr
    assert endpoint.chat_requests == []


def test_a_pipe_whose_writer_is_slow_is_read_whole(fifo):
    writer_end = os.open(fifo, os.O_RDWR)  # the writer is there from the start, as with <(command)

    def write_slowly():
        time.sleep(0.5)
        os.write(writer_end, b"late ")
        time.sleep(0.5)
        os.write(writer_end, "but whole, 完整".encode())
        os.close(writer_end)

    thread = threading.Thread(target=write_slowly)
    thread.start()
    try:
        loaded = attachments.load(str(fifo), context_window=10_000)
    finally:
        thread.join()
    assert loaded.parts[0].text == "late but whole, 完整"


def test_a_writer_that_stays_silent_is_given_up_on(fifo, monkeypatch):
    monkeypatch.setattr(attachments, "PIPE_QUIET_SECONDS", 0.5)
    keep = os.open(fifo, os.O_RDWR)  # a writer that never writes
    try:
        with pytest.raises(errors.UsageError, match=r"sent nothing for 0\.5 s"):
            attachments.load(str(fifo), context_window=10_000)
    finally:
        os.close(keep)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_with_the_way_to_attach_a_programs_output(device):
    with pytest.raises(errors.UsageError, match="it is a device, not a file") as info:
        attachments.load(device, context_window=10_000)
    assert "<(command)" in info.value.hint


def test_ctrl_c_in_a_slash_command_cancels_only_that_command(endpoint, tmp_path, fifo):
    endpoint.queue(Reply(text="still here"))
    keep = os.open(fifo, os.O_RDWR)  # a writer that never writes: /file waits on it
    try:
        child = spawn(endpoint, tmp_path)
        expect(child, PROMPT)
        child.send(f"/file {fifo}\r")
        time.sleep(1.0)
        child.sendintr()
        expect(child, "/file cancelled")
        expect(child, PROMPT)
        child.send("are you there?\r")
        expect(child, "still here")
        expect(child, PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
        child.close()
    finally:
        os.close(keep)
    assert child.exitstatus == 0
    assert [r["messages"][-1]["content"] for r in endpoint.chat_requests] == ["are you there?"]
