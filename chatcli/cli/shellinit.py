"""`chatcli shell-init bash|zsh|fish`: a key binding for the shell's rc file.

The key (Ctrl-X Ctrl-G unless the printed bind line is changed) sends the text on the
command line to `chatcli cmd --one-line`, which, its output captured and not a terminal,
only prints the suggested command (one line: a command of several lines may not show
whole on a command line, so it is refused); the binding puts it back on the line for the
user to edit or run with Enter. Nothing runs by itself.
"""

from __future__ import annotations

import shlex

HEADER = """\
# chatcli: Ctrl-X Ctrl-G turns the sentence on the command line into a shell command,
# put back on the line to edit or to run with Enter: nothing runs by itself.
# To use another key, change the last line.
"""

SNIPPETS = {
    "bash": """\
__chatcli_cmd() {
    [[ -n "$READLINE_LINE" ]] || return
    local suggestion
    suggestion="$(CHATCLI_EXE cmd --one-line -- "$READLINE_LINE" </dev/null)" || return
    [[ -n "$suggestion" ]] || return
    READLINE_LINE="$suggestion"
    READLINE_POINT=${#READLINE_LINE}
}
bind -x '"\\C-x\\C-g": __chatcli_cmd'
""",
    "zsh": """\
__chatcli_cmd() {
    [[ -n "$BUFFER" ]] || return
    local suggestion
    suggestion="$(CHATCLI_EXE cmd --one-line -- "$BUFFER" </dev/null)"
    if [[ -n "$suggestion" ]]; then
        BUFFER="$suggestion"
        CURSOR=${#BUFFER}
    fi
    zle reset-prompt
}
zle -N __chatcli_cmd
bindkey '^X^G' __chatcli_cmd
""",
    "fish": """\
function __chatcli_cmd
    set -l text (commandline)
    test -n "$text"; or return
    set -l suggestion (CHATCLI_EXE cmd --one-line -- "$text" </dev/null | string collect)
    if test -n "$suggestion"
        commandline --replace -- $suggestion
    end
    commandline -f repaint
end
bind \\cx\\cg __chatcli_cmd
""",
}


def snippet(shell: str, executable: str) -> str:
    """The lines to add to the shell's rc file, calling chatcli by `executable`."""
    return HEADER + SNIPPETS[shell].replace("CHATCLI_EXE", shlex.quote(executable))
