"""What a new user tripped over (issue 10): each case as they met it."""

from __future__ import annotations

from chatcli.store import Store
from tests.fake_server import Reply, error_body
from tests.test_repl import CTRL_D, ENTER, Harness


def test_after_a_failed_turn_the_next_request_still_alternates(server, tmp_path):
    server.queue(Reply(status=500, error=error_body("busy", "server_error")))
    harness = Harness(server, tmp_path)
    harness.session.store = Store(tmp_path / "chatcli.db")
    harness.session.new()
    harness.run("first question" + ENTER + "second question" + ENTER + "/history" + ENTER + CTRL_D)
    sent = harness.sent[-1]
    assert [m["role"] for m in sent] == ["user"]
    assert sent[0]["content"] == "first question\n\nsecond question"
    assert "first question" in harness.out.getvalue()  # still shown by /history
    saved = Store(tmp_path / "chatcli.db").load(1)
    assert [m.content for m in saved] == ["first question", "second question", "Hello! How can I help?"]


def test_renaming_a_conversation_is_not_using_it(run, endpoint):
    run("ask", "--session", "old", "first")
    run("ask", "--session", "new", "second")
    assert run("sessions", "rename", "old", "A better title").code == 0
    run("-c", "ask", "and then?")  # -c resumes the one used last, not the one renamed
    assert [m["content"] for m in endpoint.chat_requests[-1]["messages"] if m["role"] == "user"] == [
        "second", "and then?"]
    assert run("sessions", "list").stdout.splitlines()[1].split()[0] == "2"


def test_doctor_passes_a_server_that_ignores_the_model_name_with_a_note(run, endpoint):
    endpoint.any_model = True  # llama.cpp lists the file it loaded and answers to any name
    endpoint.models = ["qwen2.5-0.5b-instruct-q4_k_m.gguf"]
    result = run("doctor", "-m", "local")
    assert result.code == 0, result.stdout
    assert "local is not among the endpoint's models" in result.stdout
    assert "but it answered: the server ignores the name" in result.stdout
    assert "FAIL" not in result.stdout


def test_the_note_says_which_limit_trimmed(run, endpoint, tmp_path):
    roomy = tmp_path / "roomy.toml"
    roomy.write_text("max_messages = 3\n")
    for n in range(3):
        run("ask", "--config", str(roomy), "--session", "s", f"question {n}")
    result = run("ask", "--config", str(roomy), "--session", "s", "--usage", "and now?")
    assert "left out to fit max_messages = 3 (/history)" in result.stderr
    tight = tmp_path / "tight.toml"
    tight.write_text("context_window = 256\nmax_tokens = 100\n")
    result = run("ask", "--config", str(tight), "--session", "s", "--usage", "word " * 100)
    assert "left out to fit the context (156 tokens for the request) (/history)" in result.stderr


def test_a_question_where_a_command_goes_suggests_ask(run, endpoint):
    for args, hint in ((["what is 2+2"], "to ask it: chatcli ask 'what is 2+2'"),
                       (["hello", "there"], "to ask it: chatcli ask 'hello there'"),
                       (["version"], "chatcli --version prints the version"),
                       (["sesions", "list"], "did you mean `chatcli sessions`?")):
        result = run(*args)
        assert result.code == 2 and result.stderr.count("\n") == 1 and hint in result.stderr, result
    assert endpoint.chat_requests == []


LLAMA_CPP_TOO_LONG = {"error": {"code": 400, "message": "the request exceeds the available context size, "
                                "try increasing it", "type": "exceed_context_size_error",
                                "n_prompt_tokens": 3000, "n_ctx": 2048}}


def test_an_overflowing_piped_question_to_llama_cpp_names_both_numbers(run, endpoint, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("context_window = 2048\n")
    endpoint.queue(Reply(status=400, error=LLAMA_CPP_TOO_LONG))
    result = run("ask", "--config", str(config), "summarise", input="a log line with words\n" * 300)
    assert result.code == 7 and result.stdout == ""
    line = result.stderr.splitlines()[0]
    assert "the newest message alone is about" in line and "the model takes 2,048 tokens" in line
    assert "/pin" not in result.stderr  # nothing is pinned in a one-shot question


def test_an_error_event_in_a_stream_from_llama_cpp_is_exit_7_too(run, endpoint):
    import json

    event = f"data: {json.dumps(LLAMA_CPP_TOO_LONG)}\n\n".encode()
    endpoint.queue(Reply(body=lambda: [event]), Reply(body=lambda: [event]))
    result = run("ask", "a question")
    assert result.code == 7 and "too long" in result.stderr


def test_the_stated_context_is_used_for_the_rest_of_the_session(server, tmp_path):
    from chatcli.conversation import Message
    from tests.fake_server import CONTEXT_TOO_LONG

    harness = Harness(server, tmp_path, max_messages=100)
    for n in range(6):
        harness.session.conversation.messages += [Message("user", f"old question {n} " * 200),
                                                  Message("assistant", "old answer " * 200)]
    server.queue(Reply(status=400, error={"error": CONTEXT_TOO_LONG}))  # "maximum ... is 4096 tokens"
    harness.run("a new question" + ENTER + "/tokens" + ENTER + CTRL_D)
    first, second = harness.sent
    assert len(second) < len(first) and second[-1]["content"] == "a new question"
    assert harness.session.settings.context_window == 4096
    assert "context is 4,096 tokens: chatcli uses that for the rest of this session" in harness.err.getvalue()
    assert "context window 4096" in harness.out.getvalue()


def test_counts_and_hints_read_as_a_person_writes_them(run, endpoint, server, tmp_path):
    endpoint.models = ["test-model"]
    shown = run("doctor").stdout
    assert "lists 1 model\n" in shown or "lists 1 model " in shown
    path = tmp_path / "k.toml"
    path.write_text('api_key = "sk-in-file-0123"\n')
    path.chmod(0o644)
    shown = run("doctor", "--config", str(path)).stdout
    assert shown.count("chmod 600") == 1  # said once, not "chmod 600 k.toml -> chmod 600 k.toml"
    run("ask", "--session", "one", "hi")
    harness = Harness(server, tmp_path)
    harness.run("/pin x" + ENTER + "/temperature x" + ENTER + CTRL_D)
    err = harness.err.getvalue()
    assert "the message number must be a whole number of at least 1 (" not in err
    assert "message number must be a whole number of at least 1\n" in err  # no 'or default' here
    assert "temperature must be a number from 0 to 2, or 'default'" in err
    endpoint.queue(Reply(status=404, error=error_body("The model `x` does not exist", "invalid_request_error",
                                                      "model_not_found")))
    assert "/model in a session" in run("ask", "-m", "x", "hi").stderr
    assert "removed 1 conversation\n" in run("sessions", "rm", "one", "--yes").stderr


def test_resuming_shows_where_the_conversation_stands(run, endpoint, server, tmp_path):
    import os

    import pexpect

    from tests.test_e2e_terminal import BIN, PROMPT, expect

    run("ask", "--session", "s", "an early question")
    endpoint.queue(Reply(text="The answer,\nover\nseveral\nlines."))
    run("ask", "--session", "s", "the latest question")
    child = pexpect.spawn(str(BIN), ["--session", "s"], env=os.environ.copy(), dimensions=(40, 120),
                          encoding="utf-8", timeout=30)
    expect(child, PROMPT)
    shown = child.before
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert "resumed 1: an early question (4 messages)" in shown
    assert "you: the latest question" in shown and "assistant: The answer," in shown
    assert "(… 2 more lines)" in shown and "an early question\r\n  you" not in shown
    harness = Harness(server, tmp_path)
    harness.session.store = Store(tmp_path / "data" / "chatcli.db")
    harness.run("/resume s" + ENTER + CTRL_D)
    assert "you: the latest question" in harness.out.getvalue()


def test_piped_text_sent_first_is_shown_before_its_answer(server, tmp_path):
    harness = Harness(server, tmp_path)
    harness.run(CTRL_D, first="notes from a file\nsecond line\nthird\nfourth\nfifth")
    out = harness.out.getvalue()
    assert out.index("> notes from a file") < out.index("Hello! How can I help?")
    assert "(… 2 more lines)" in out and "fourth" not in out
