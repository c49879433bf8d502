"""`chatcli` (the interactive session, or an answer to piped text) and `chatcli ask`:
what they do once the command line is read. No typer here: __main__ runs the
commonest command lines straight through these functions, app.py the rest.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from chatcli import __version__, errors
from chatcli.cli.base import (
    Flags,
    all_closed,
    build_settings,
    diagnostics,
    key_for,
    offers_tools,
    read_stdin,
    resolve_key,
)
from chatcli.config import Settings, data_dir, endpoint_of
from chatcli.render import (
    Diagnostics,
    answer_note,
    counted,
    dropped_note,
    for_terminal,
    format_usage,
    wants_color,
)
from chatcli.schema import LOCAL
from chatcli.session import Session
from chatcli.textsafe import json_safe, url_shown


def ask_words(flags: Flags, words: list[str]) -> None:
    """`chatcli ask WORDS...`: the words and any piped text, answered once."""
    flags = flags.check()
    text = " ".join(words)
    diag = diagnostics()
    settings = build_settings(flags, diag)
    piped = read_stdin(diag, context_window=settings.context_window)
    if not text.strip() and not (piped and piped.strip()) and not flags.files:
        raise errors.UsageError("nothing to ask: give a question, pipe text in or attach a file",
                                hint='chatcli ask "your question"')
    answer(text, piped, flags, settings)


def attach_all(session: Session, files: list[str] | None, piped: str | None, diag: Diagnostics) -> None:
    """Attach the -f files (and piped text, first, unless `-f -` places it) to the next
    message, telling what a directory brought; any refusal stops here, before anything is
    saved or sent."""
    refs = list(files or [])
    if piped is not None and piped.strip() and "-" not in refs:
        refs.insert(0, "-")
    for ref in refs:
        loaded = session.attach(ref, stdin=piped)
        for line in loaded.listing:
            diag.note(line)
        for warning in loaded.warnings:
            diag.warning(warning)


def print_code(reply: str, diag: Diagnostics) -> None:
    """`ask -x`: the code of the reply's code blocks alone (a blank line between two); a
    reply without any is printed whole, with a warning."""
    from chatcli.mdblocks import code_blocks

    blocks = code_blocks(reply)
    if not blocks:
        diag.warning("the reply has no code block; it is printed whole")
    text = "\n\n".join(block.rstrip("\n") for block in blocks) if blocks else reply.rstrip("\n")
    sys.stdout.write(for_terminal(text, sys.stdout) + "\n")
    sys.stdout.flush()


def saving(flags: Flags, settings: Settings) -> bool:
    return not flags.no_save and settings.save


def must_save(flags: Flags) -> bool:
    """--session and -c ask for a saved conversation: not saving it is a failure (exit 8)."""
    return bool(flags.session or flags.resume_latest) and not flags.no_save


def open_session(flags: Flags, settings: Settings, diag: Diagnostics, *,
                 key: str | None = None, interactive: bool = False, console: Any = None,
                 keyboard: Any = None) -> Session:
    """A session wired to the client, the store and the profiles, resumed as the flags ask.

    `key`, when already resolved for `settings`, is used as it is: api_key_cmd may be a
    password manager that asks each time it runs."""
    from chatcli import client
    from chatcli.quirks import FILE_NAME, Quirks, cache_dir
    env = os.environ
    quirks = Quirks(cache_dir(env) / FILE_NAME)  # what each endpoint's models refuse, remembered

    def make_client(s: Settings) -> Any:
        if s.base_url == LOCAL:
            from chatcli.cli.local import local_client

            return local_client(s, diag, debug=bool(flags.debug))
        resolved = key if key is not None and s is settings else resolve_key(s)
        return client.OpenAIClient(endpoint_of(s, resolved), notify=diag.note, quirks=quirks,
                                   debug=diag.debug if flags.debug else None)

    def load_profile(name: str | None) -> Settings:
        return build_settings(Flags(profile=name, config=flags.config))

    store = None
    if saving(flags, settings):
        from chatcli.store import open_store

        try:
            store = open_store(data_dir(env, settings))
        except errors.StorageError as exc:
            if must_save(flags):
                raise
            diag.warning(f"{exc.line()}; this conversation will not be saved")
    # A one-shot answer that must be saved says so once, at the end, as its exit code.
    warn = (lambda text: None) if must_save(flags) and not interactive else diag.warning
    def make_tools() -> Any:
        from chatcli.cli.tooling import toolbox

        return toolbox(settings, flags, diag, console=console, keyboard=keyboard, interactive=interactive)

    # A session that offers none builds its tools when /tools or a role first asks for them.
    tools, every = make_tools() if offers_tools(settings, flags) else (None, {})
    session = Session(settings, client_factory=make_client, load_profile=load_profile,
                      profiles=list(settings.profiles), store=store, warn=warn, tools=tools, catalog=every,
                      tools_factory=make_tools if interactive and tools is None else None)
    if flags.session:
        session.open(flags.session)
    elif flags.resume_latest and session.resume_latest() is None:
        diag.note("no saved conversation yet; starting a new one")
    return session


def with_template(settings: Settings, question: str, piped: str | None,
                  files: list[str] | None) -> tuple[str, str | None]:
    """A role's template filled with the question (or, with none, the piped text): the
    message a one-shot question sends, and what is left of the piped text."""
    if not settings.template:
        return question, piped
    if question.strip():
        return settings.template.replace("{input}", question), piped
    if piped is not None and piped.strip() and not files:
        return settings.template.replace("{input}", piped.strip("\n")), None
    return question, piped


def answer(question: str | None, piped: str | None, flags: Flags, settings: Settings) -> None:
    """Send one message and print the reply: the body of `ask` and of piped `chatcli`."""
    diag = diagnostics()
    key = key_for(settings)  # fail before saving a question that cannot be sent
    from chatcli.client import load_sdk

    load_sdk()  # here, a few calls deep: see the note below answer()
    session = open_session(flags, settings, diag, key=key)
    try:
        _answer(session, question, piped, flags, settings, diag, key)
    finally:
        session.close()  # the MCP servers it started stop with it; the store is closed
        all_closed()  # so the process may end without a teardown (base.finish)


# Why answer() loads the SDK itself: CPython 3.11 keeps the frames of running calls in 16 kB
# chunks and frees a chunk as soon as the stack returns below it. Imported from ~25 calls deep
# (where the client first needs it), openai's thousand nested imports cross a chunk's edge
# again and again: ~3,500 more mmap/munmap pairs than at the top of a script, 40-60 ms of a
# one-line answer. From answer(), a few calls deep, it costs what the plain SDK script pays.


def _answer(session: Session, question: str | None, piped: str | None, flags: Flags, settings: Settings,
            diag: Diagnostics, key: str | None) -> None:
    from chatcli.render import drawing, reply_sink

    if key is None:
        _ = session.client  # the local model: loaded (or found) before the question is saved
    if flags.debug:
        diag.debug(f"profile {settings.profile or '(none)'}, model {settings.model}, endpoint "
                   f"{url_shown(settings.base_url)}, key from {settings.key_source.describe(os.environ)}")
    question, piped = with_template(settings, (question or "").strip(), piped, flags.files)
    attach_all(session, flags.files, piped, diag)
    how = drawing(sys.stdout, os.environ, markdown=settings.markdown and not flags.no_markdown,
                  quiet=bool(flags.json or flags.code))
    session.start_tools()  # MCP servers say they are starting before the waiting line is drawn
    # The waiting line on the terminal only, never into a pipe or a log.
    sink = reply_sink(how, sys.stdout, reasoning=settings.reasoning, thinking=sys.stderr,
                      waiting=None if flags.json else sys.stderr, model=settings.model)
    try:
        result = session.ask(question, sink, stream=not (flags.no_stream or flags.json))
    except errors.ChatcliError:
        if must_save(flags) and session.save_failure is not None and session.unsaved():
            diag.warning(f"{session.save_failure.message}; this conversation was not saved")
        raise
    if flags.json:
        payload = dict(result.response or {})
        calls = [call for reply in result.replies for call in reply.tool_calls]
        if calls:  # what ran before this response, in the order it ran
            payload["chatcli_tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments,
                 "status": c.result.status if c.result else "not run",
                 "result": c.result.content if c.result else None,
                 "output": c.result.whole if c.result else None} for c in calls]
        sys.stdout.write(json_safe(json.dumps(payload, indent=2, ensure_ascii=False)) + "\n")
        sys.stdout.flush()
    if flags.code:
        print_code(result.reply.content, diag)
    if result.notice:
        diag.warning(result.notice)
    if flags.usage:
        line = format_usage(result.usage, price_input=settings.price_input,
                            price_output=settings.price_output, currency=settings.currency)
        if note := answer_note(result.answer_after, bool(result.reply.reasoning)):
            line += f" · {note}"
        diag.usage(line + (f" · {dropped_note(result.window)}" if result.window.dropped else ""))
    if session.save_failure is not None and session.unsaved():
        if must_save(flags):
            raise errors.StorageError(f"{session.save_failure.message}; the reply was not saved",
                                      hint=session.save_failure.hint)
        diag.warning("the reply was not saved (see above)")


def interact(flags: Flags, settings: Settings | None = None, *, first: str | None = None) -> int:
    """The interactive session: prompt_toolkit in, Rich out. Returns the exit code."""
    from chatcli import client, repl
    from chatcli.render import drawing, make_console

    env = os.environ
    if flags.code:
        raise errors.UsageError("--code prints one answer's code; the session has /save N PATH and /copy N",
                                hint='chatcli ask -x "question"')
    if not sys.stdout.isatty():
        raise errors.UsageError("the interactive session needs a terminal on stdout",
                                hint='use chatcli ask "question" in scripts')
    diag = diagnostics()
    settings = settings or build_settings(flags, diag)
    if settings.key_source.kind in ("none", "env", "value") and settings.base_url != LOCAL:
        resolve_key(settings)  # a first run without a key learns how to set one up now
    color = wants_color(sys.stdout, env)
    console = make_console(sys.stdout, color=color)
    keyboard = repl.terminal_input() if first is not None or not sys.stdin.isatty() else None
    session = open_session(flags, settings, diag, interactive=True, console=console, keyboard=keyboard)
    role = f" · role {settings.role}" if settings.role else ""
    where = "on this machine" if settings.base_url == LOCAL else f"at {url_shown(settings.base_url)}"
    diag.usage(f"chatcli {__version__} · {settings.model} {where}{role} · "
               "/help for commands, Ctrl-D to leave")
    attach_all(session, flags.files, None, diag)
    if session.pending:
        diag.usage(f"attached {', '.join(part.label() for part in session.pending)}: sent with your first "
                   "message (/detach drops)")
    info = session.info()
    if info is not None:
        from chatcli.export import last_exchange

        diag.usage(f"resumed {info.id}: {info.label} "
                   f"({counted(info.message_count, 'message')})")
        for line in last_exchange(session.conversation.messages):
            diag.usage(line)
    loop = repl.Repl(
        session,
        console=console,
        diag=diag,
        markdown=drawing(sys.stdout, env, markdown=settings.markdown and not flags.no_markdown) == "markdown",
        history_path=data_dir(env, settings) / "input_history",
        # --no-save writes nothing typed anywhere; a data directory that failed was told once.
        keep_history=saving(flags, settings) and session.store is not None,
        vi_mode=settings.vi_mode,
        input=keyboard,
        on_first_draw=client.warm_up,
    )
    try:
        code = loop.run(first_message=first)
    finally:
        session.stop_tools()
    if not keep_unsaved(session, diag, data_dir(env, settings)):
        return code
    return errors.EXIT_STORAGE if code == errors.EXIT_OK and must_save(flags) else code


def keep_unsaved(session: Session, diag: Diagnostics, directory: Any) -> bool:
    """On leaving: if saving failed and part of the conversation is still unsaved after one
    more try, say what, and write it as Markdown to a file of its own (in the data directory,
    else the temporary one) so that it is not lost. True when something was unsaved."""
    import tempfile
    import time
    from pathlib import Path

    from chatcli.export import to_markdown
    from chatcli.store import ConversationInfo

    unsaved = session.unsaved()
    if not unsaved or session.save_failure is None:
        return False
    questions = sum(1 for m in unsaved if m.role == "user")
    what = f"{counted(questions, 'question')} and {counted(len(unsaved) - questions, 'reply')}"
    info = ConversationInfo(id=session.conversation_id or 0, name=None, title="chatcli: not saved",
                            created_at=time.time(), updated_at=time.time(), profile=session.settings.profile,
                            model=session.settings.model, system_prompt=None)
    text = to_markdown(info, unsaved)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (Path(directory), Path(tempfile.gettempdir())):
        path = folder / f"unsaved-{stamp}-{os.getpid()}.md"
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                           encoding="utf-8") as handle:
                handle.write(text)
        except OSError:
            continue
        diag.warning(f"{what} of this conversation could not be saved ({session.save_failure.message}); "
                     f"they are written to {path}")
        return True
    diag.warning(f"{what} of this conversation could not be saved ({session.save_failure.message}), nor "
                 "written to a file: they are only on the screen above")
    return True
