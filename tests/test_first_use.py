"""What a new user tripped over (issue 10): each case as they met it."""

from __future__ import annotations

import json

from chatcli.store import Store
from tests.fake_server import Reply, error_body
from tests.terminal import terminal_screen
from tests.test_repl import CTRL_D, ENTER, Harness


def test_after_a_failed_turn_the_next_request_still_alternates(server, tmp_path):
    server.queue(Reply(status=500, error=error_body("busy", "server_error")))
    harness = Harness(server, tmp_path)
    harness.session.store = Store(tmp_path / "chatcli.db")
    harness.session.new()
    harness.run("first question" + ENTER + "second question" + ENTER + "/history" + ENTER + CTRL_D)
    sent = harness.sent[-1]
    assert [m["role"] for m in sent] == ["user"]
    assert sent[0]["content"] == "second question"  # the one that got no reply stays behind (issue 20)
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
    result = run("ask", "--config", str(config), "summarise", input="a log line with words\n" * 200)
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
    assert "context window 4,096" in harness.out.getvalue()


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

    from tests.terminal import BIN, PROMPT, expect

    run("ask", "--session", "s", "an early question")
    endpoint.queue(Reply(text="The answer,\nover\nseveral\nlines."))
    run("ask", "--session", "s", "the latest question")
    child = pexpect.spawn(str(BIN), ["--session", "s"], env=os.environ.copy(), dimensions=(40, 120),
                          encoding="utf-8", timeout=30)
    expect(child, PROMPT)
    shown = child.before
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    assert "resumed 1: s (4 messages)" in shown
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


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_failed_one_shot_questions_are_kept_but_do_not_flood_the_list(run, endpoint, monkeypatch, db):
    run("ask", "a question that got its answer")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    for n in range(3):
        assert run("ask", f"hi {n}").code == 5  # connection refused
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
    endpoint.queue(Reply(status=401, error=error_body("Incorrect API key", "invalid_api_key")))
    assert run("ask", "one more failure").code == 3
    listing = run("sessions", "list")
    assert [line.split()[-1] for line in listing.stdout.splitlines()[1:]] == ["answer"]
    assert ("4 conversations that never got a reply not shown: `chatcli sessions list --all` shows them, "
            "`chatcli sessions rm --unanswered` removes them") in listing.stderr
    every = run("sessions", "list", "--all").stdout
    assert "hi 2 (no reply)" in every and "one more failure (no reply)" in every
    assert [c["answered"] for c in json.loads(run("sessions", "list", "--all", "--json").stdout)] == [
        False, False, False, False, True]
    assert Store(db).load(2)[0].content == "hi 0"  # the question itself is kept until removed
    assert run("sessions", "rm", "--unanswered").code == 2  # no terminal to ask on: --yes needed
    removed = run("sessions", "rm", "--unanswered", "--yes")
    assert removed.code == 0 and "removed 4 conversations" in removed.stderr
    assert [c.title for c in Store(db).conversations()] == ["a question that got its answer"]
    assert "no conversation without a reply" in run("sessions", "rm", "--unanswered", "-y").stderr
    assert run("sessions", "rm").code == 2


def test_an_interrupted_reply_is_an_answer_not_a_failure(db, tmp_path):
    from chatcli.conversation import Message

    store = Store(db)
    cut = store.create(title="cut short")
    store.add(cut, Message("user", "q"))
    store.add(cut, Message("assistant", "partial", finish_reason="interrupted"))
    streaming = store.create(title="arriving now")
    store.add(streaming, Message("user", "q"))
    store.add(streaming, Message("assistant", "", finish_reason="streaming"))
    failed = store.create(title="failed")
    store.add(failed, Message("user", "q"))
    assert [c.title for c in store.conversations(unanswered=False)] == ["arriving now", "cut short"]
    assert [c.title for c in store.unanswered()] == ["failed"]


def test_a_conversation_is_typed_back_by_the_title_the_list_shows(run, endpoint, db):
    run("ask", "My first chat about Rust")
    run("ask", "hello")
    run("ask", "hello")
    assert run("sessions", "show", "My first chat about Rust").code == 0
    assert run("sessions", "show", "my first").stdout.startswith("# My first chat about Rust")
    ambiguous = run("sessions", "show", "hello")
    assert ambiguous.code == 2
    said = "2 conversations are called 'hello': 3, 2 (use the number (sessions list shows them))"
    assert said in ambiguous.stderr
    # --session takes the whole title or a new name: the start of a title starts a new one
    run("ask", "--session", "My first", "a new one")
    assert Store(db).find("My first").title == "My first"
    run("ask", "--session", "my first chat about rust", "and more")
    assert len(Store(db).load(1)) == 4


def test_naming_an_existing_conversation(run, endpoint, server, tmp_path, db):
    run("ask", "an unnamed question")
    run("ask", "another")
    assert run("sessions", "rename", "1", "rust notes").code == 0
    run("ask", "--session", "rust notes", "more please")
    assert len(Store(db).load(1)) == 4  # the name opens it, as --session always did
    taken = run("sessions", "rename", "2", "rust notes")
    assert taken.code == 2 and "conversation 1 is already called 'rust notes'" in taken.stderr
    assert run("sessions", "rename", "2", "42").code == 2  # a number is an ID, not a name
    harness = Harness(server, tmp_path)
    harness.session.store = Store(db)
    harness.session.new()
    harness.run("/resume 2" + ENTER + "/rename go notes" + ENTER + "/new go notes" + ENTER + "/sessions"
                + ENTER + "/resume rust" + ENTER + CTRL_D)
    out = harness.out.getvalue()
    assert "this conversation is now called 'go notes': /resume go notes or chatcli --session 'go notes' " \
           "opens it" in out
    assert "conversation 2 is already called 'go notes'" in harness.err.getvalue()
    assert "resumed 1: rust notes (4 messages)" in out
    header = next(line for line in out.splitlines() if line.startswith("ID "))
    assert header.split() == ["ID", "LAST", "USED", "MSGS", "MODEL", "TITLE"]  # as in sessions list


def test_the_usage_line_totals_this_conversation_and_says_so(server, tmp_path, db):
    server.queue(Reply(prompt_tokens=10, completion_tokens=5), Reply(prompt_tokens=20, completion_tokens=5),
                 Reply(prompt_tokens=7, completion_tokens=3), Reply(prompt_tokens=40, completion_tokens=2))
    harness = Harness(server, tmp_path)
    harness.session.store = Store(db)
    harness.session.new()
    harness.run("one" + ENTER + "two" + ENTER + "/new" + ENTER + "three" + ENTER + "/resume 1" + ENTER
                + "four" + ENTER + CTRL_D)
    totals = [line.split(" · ")[-1] for line in harness.out.getvalue().splitlines()
              if line.startswith("tokens:")]
    assert totals == ["this conversation: 15 tokens", "this conversation: 40 tokens",
                      "this conversation: 10 tokens", "since resumed: 42 tokens"]


LONG_LINE = "total = compute(" + ", ".join(f"argument_{n}" for n in range(12)) + ")  # one line"
CODE_REPLY = (f"Like this:\n\n```python\n{LONG_LINE}\nif total:\n    print(total)\n```\n\n"
              "and a Makefile:\n\n```make\nall:\n\tcc -o app app.c\n```\n")


def test_a_code_block_on_screen_is_the_exact_code(endpoint, tmp_path):
    from tests.terminal import ANSI

    endpoint.queue(Reply(text=CODE_REPLY, chunk_chars=7))
    received, screen = terminal_screen(endpoint, tmp_path, "ask", "code please", cols=60)
    plain = ANSI.sub("", received).replace("\r", "")
    # The long line reached the terminal whole (the terminal wraps it, and joins it when
    # copied); no padding before or after any line; the tab is a tab.
    assert f"\n{LONG_LINE}\nif total:\n    print(total)\n" in plain
    assert "\nall:\n\tcc -o app app.c\n" in plain
    at = screen.index(LONG_LINE[:60])
    assert "".join(screen[at:at + 3]).startswith(LONG_LINE)
    assert screen[at + 3] == "if total:" and screen[at + 4] == "    print(total)"


def test_debug_lines_are_printed_above_the_reply_being_drawn(endpoint, tmp_path):
    words = [f"word{n} " for n in range(40)]
    endpoint.queue(Reply(pieces=["A **bold** start: ", *words, "\n\nSecond paragraph."], delay=0.02))
    _, screen = terminal_screen(endpoint, tmp_path, "--debug", "ask", "hi", rows=120, cols=100)
    shown = "\n".join(screen)
    events = [line for line in screen if line.startswith("debug: ← {")]
    assert len(events) >= 40  # every streamed event's line is on the screen, none drawn over
    assert "A bold start: word0 word1" in shown and "Second paragraph." in shown
    assert not [line for line in screen if "debug:" in line and not line.startswith("debug:")]


def test_a_long_line_being_typed_wraps_without_a_marker(endpoint, tmp_path):
    import os

    import pexpect
    import pyte

    from tests.terminal import BIN, PROMPT, expect, on_screen

    child = pexpect.spawn(str(BIN), [], env={**os.environ, "OPENAI_BASE_URL": endpoint.base_url,
                                            "OPENAI_API_KEY": "sk-test", "CHATCLI_MODEL": "test-model",
                                            "CHATCLI_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm"},
                          dimensions=(20, 50), encoding="utf-8", timeout=30)
    screen = pyte.Screen(50, 20)
    stream = pyte.Stream(screen)
    child.logfile_read = type("Feed", (), {"write": lambda self, text: stream.feed(text),
                                           "flush": lambda self: None})()
    expect(child, PROMPT)
    typed = "a question long enough to wrap onto the next line of this narrow terminal"
    child.send(typed)
    on_screen(child, screen, "terminal")
    child.send("\x1b\r" + "second line")  # Alt-Enter: a real new line
    on_screen(child, screen, "second line")
    lines = [line.rstrip() for line in screen.display]
    first = next(n for n, line in enumerate(lines) if line.startswith("> a question"))
    assert lines[first + 1].startswith("  ") and lines[first + 1].strip()  # wrapped: under the text
    assert lines[first + 2].startswith(". second line")  # a new line: marked
    child.sendcontrol("c")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def complete(env: dict[str, str], words: str) -> tuple[list[str], str]:
    """What bash's Tab gets from chatcli for the command line `words` (the protocol the
    script of --show-completion speaks), and what chatcli said on stderr meanwhile."""
    import subprocess

    from tests.terminal import BIN

    done = subprocess.run([str(BIN)], env={**env, "_CHATCLI_COMPLETE": "complete_bash", "COMP_WORDS": words,
                                           "COMP_CWORD": str(len(words.split(" ")) - 1)},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done.stdout.split(), done.stderr


def test_shell_completion_scripts_for_bash_zsh_and_fish(tmp_path):
    import os
    import subprocess

    from tests.terminal import BIN

    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}  # name the shell
    for shell, marker in (("bash", "complete -o default -F _chatcli_completion chatcli"),
                          ("zsh", "#compdef chatcli"), ("fish", "complete --command chatcli")):
        shown = subprocess.run([str(BIN), "--show-completion", shell], env=env, capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert shown.returncode == 0 and marker in shown.stdout and "_CHATCLI_COMPLETE" in shown.stdout


def test_tab_completes_commands_options_profiles_and_conversations(run, endpoint, tmp_path):
    import os

    config = tmp_path / "c.toml"
    config.write_text('[profiles.deepseek]\nmodel = "deepseek-chat"\n[profiles.local]\nmodel = "qwen"\n')
    run("ask", "a first conversation")
    env = {**os.environ, "CHATCLI_DATA_DIR": str(tmp_path / "data")}
    assert complete(env, "chatcli ses") == (["sessions"], "")
    assert complete(env, "chatcli sessions re")[0] == ["rename"]
    assert complete(env, "chatcli ask --no-m")[0] == ["--no-markdown"]
    assert complete(env, f"chatcli --config {config} -p ")[0] == ["deepseek", "local"]
    assert complete(env, f"chatcli ask --config {config} --profile d")[0] == ["deepseek"]
    assert complete(env, "chatcli sessions show ")[0] == ["1"]
    assert complete(env, "chatcli --session ")[0] == ["1"]
    # A word that is not a command, a broken config: nothing printed into the command line.
    assert complete(env, "chatcli what is ")[1] == ""
    config.write_text("this is not toml")
    assert complete(env, f"chatcli --config {config} -p ") == ([], "")


def test_tab_completion_in_a_real_bash(tmp_path):
    """The script --show-completion prints, sourced in bash, completes on a real terminal."""
    import os

    import pexpect

    from tests.terminal import BIN

    env = {**os.environ, "PATH": f"{BIN.parent}:{os.environ['PATH']}", "PS1": "$ ",
           "CHATCLI_DATA_DIR": str(tmp_path / "data"), "TERM": "dumb"}
    env.pop("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", None)
    shell = pexpect.spawn("bash", ["--norc", "--noprofile"], env=env, encoding="utf-8", timeout=30,
                          dimensions=(24, 200))
    shell.expect_exact("$ ")
    shell.sendline('eval "$(chatcli --show-completion)"')
    shell.expect_exact("$ ")
    # Type, complete twice, then run the completed line as printf's arguments (Ctrl-A, Ctrl-E):
    # its output shows what Tab made of the line, however the line was redrawn meanwhile.
    shell.send("chatcli sess\t" + "exp\t" + "\x01printf '%s|' \x05\r")
    shell.expect_exact("chatcli|sessions|export|")
    shell.sendline("exit")
    shell.expect(pexpect.EOF)


def test_the_last_exchange_shown_on_resume_fits_80_columns_in_any_script():
    from unicodedata import east_asian_width

    from chatcli.conversation import Message
    from chatcli.export import last_exchange

    shown = last_exchange([Message("user", "解释一下所有权和借用的区别，" * 20),
                           Message("assistant", "Ownership means " * 30, finish_reason="interrupted")])
    assert shown[0].startswith("  you: 解释") and shown[1].startswith("  assistant (interrupted): Ownership")
    for line in shown:
        assert sum(2 if east_asian_width(ch) in "WF" else 1 for ch in line) <= 80, line


def test_a_search_hit_is_one_line(run, endpoint):
    endpoint.queue(Reply(text="first line\nsecond line with docker in it\nthird line\n\n- a list item"))
    run("ask", "how do I use docker?")
    found = run("sessions", "search", "docker").stdout.splitlines()
    assert len(found) == 2  # the question and the reply: one line each
    assert "second line with [docker] in it third line" in found[0]


def test_a_reply_cut_by_a_dropped_connection_leaves_no_raw_markers_on_screen(endpoint, tmp_path):
    endpoint.queue(Reply(pieces=["The answer is **加粗的文字 and `code", " more"], fault="drop"))
    _, screen = terminal_screen(endpoint, tmp_path, "ask", "hi")
    shown = "\n".join(screen)
    assert "The answer is 加粗的文字 and code" in shown
    assert "broke during the reply" in shown.replace("\n  ", " ")
    assert "**" not in shown and "`" not in shown
