"""The Dockerfile language as pure logic: BuildKit's parser, its shell lexer, the helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.build import shell
from hypr.build.arguments import (
    arg_definitions,
    command_form,
    copy_sources,
    healthcheck,
    heredoc_content,
    key_values,
)
from hypr.build.dockerfile import (
    parse,
)
from hypr.build.forms import go_duration
from hypr.build.instruction import (
    DockerfileError,
)
from hypr.build.syntax import SyntaxProblem

# BuildKit's frontend/dockerfile/shell/envVarTest (the lines for every platform and Unix),
# run with its environment; `error` means the word must be refused.
ENV_VAR_TEST = r"""
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX?}                |     error
he${XXX:?}               |     error
he${PWD?}                |     he/home
he${PWD:?}               |     he/home
he${NULL?}               |     he
he${NULL:?}              |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he${PWD                  |     error
he${PWD:=000}xx          |     error
he${PWD:+${PWD}:}xx      |     he/home:xx
he${XXX:-\$PWD:}xx       |     he$PWD:xx
he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
안녕하세요                 |     안녕하세요
안'녕'하세요               |     안녕하세요
안'녕하세요                |     error
안녕$KOREAN                |     안녕한국어
${{aaa}                   |     error
${aaa}}                   |     }
${aaa                     |     error
${{aaa:-bbb}              |     error
${aaa:-bbb}}              |     bbb}
${aaa:-bbb                |     error
${aaa:-bbb}               |     bbb
${aaa:-${bbb:-ccc}}       |     ccc
${aaa:-bbb ${foo}         |     error
${aaa:-bbb {foo}          |     bbb {foo
${:}                      |     error
${:-bbb}                  |     error
${:+bbb}                  |     error
$@@@                      |     @@
$999aaa                   |     aaa
${001:-bbb}aaa            |     bbbaaa
"""
LEX_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _table() -> list[tuple[str, str]]:
    rows = []
    for line in ENV_VAR_TEST.strip().splitlines():
        source, expected = (part.strip() for part in line.split("|"))
        rows.append((source, expected))
    # envVarTest's positional and special parameters: never set in a Dockerfile.
    for name in ["1", "2", "9", "999", "001", "@", "*", "#", "?", "-", "$", "!", "0"]:
        rows += [(f"${name}", ""), (f"${{{name}}}", ""), (f"${{{name}:+bbb}}", "")]
        rows.append((f"${{{name}:-bbb}}", "bbb"))
    return rows


@pytest.mark.parametrize(("source", "expected"), _table())
def test_envvartest(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(shell.ShellError):
            shell.expand(source, LEX_ENV.get)
    else:
        assert shell.expand(source, LEX_ENV.get) == expected


# BuildKit's wordsTest: (environment, text, the words ProcessWords gives).
SPACE = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", ["hello"]),
        ("hello${hi}bye", ["hellohibye"]),
        ("hello${space}bye", ["helloabc", "defbye"]),
        ('hello"${space}"bye', ["helloabc  defbye"]),
        ('hello "${space}"bye', ["hello", "abc  defbye"]),
        ("hello${leading}def", ["hello", "ab", "cdef"]),
        ('hello"${leading}" def', ["hello  ab c", "def"]),
        ('hello"${leading}"', ["hello  ab c"]),
        ("hello${leading}", ["hello", "ab", "c"]),
        ("hello${trailing}", ["helloab", "c"]),
        ("hello${trailing}d", ["helloab", "c", "d"]),
        ('hello"${trailing}"d', ["helloab c   d"]),
        ('hel"lo${trailing}"', ["helloab c   "]),
        ('hello" there  "', ["hello there  "]),
        ("hello there     ", ["hello", "there"]),
        ("hello\\ there", ["hello there"]),
        ('hello\\" there', ['hello"', "there"]),
        ('hello"\\\\there"', ["hello\\there"]),
        ('hello"\\there"', ["hello\\there"]),
        ("hello'\\\\there'", ["hello\\\\there"]),
        ("hello'$there'", ["hello$there"]),
        ('a "" b', ["a", "b"]),
    ],
)
def test_wordstest(text: str, expected: list[str]) -> None:
    assert shell.words(text, SPACE.get) == expected


def test_words_refuses_an_open_quote() -> None:
    with pytest.raises(shell.ShellError, match="double-quote"):
        shell.words('hello" there', SPACE.get)


@pytest.mark.parametrize(
    ("word", "env", "expected"),
    [  # lex_test.go's TestProcessWithMatches: the `#`, `%` and `/` operators
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
        ("${BAR?bbb}", {"BAR": ""}, ""),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
        ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
        ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
        ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
        ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
        ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
        ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
        ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
        ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
        ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
         "/foo.*/*.txt - /foo..*.txt"),
        ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
         "/tmp/bar.txt - /bar.txt"),
        ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
        ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
        ("something-${V}.${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tgz",
         {"V": "v1", "OS": "linux", "ARCH": "arm", "VARIANT": "v7"},
         "something-v1.linux-arm-v7.tgz"),
    ],
)  # fmt: skip
def test_substitution_operators(word: str, env: dict[str, str], expected: str) -> None:
    assert shell.expand(word, env.get) == expected


@pytest.mark.parametrize(
    "word", ["${BAZ?ccc}", "${BAR:?bbb}", "${FOO=aaa}", "${FOO:#}", "${FOO:%%}", "${FOO//}"]
)
def test_substitution_errors(word: str) -> None:
    with pytest.raises(shell.ShellError):
        shell.expand(word, {"FOO": "xxx", "BAR": ""}.get)


def test_required_variable_message_is_substituted() -> None:
    with pytest.raises(shell.ShellError, match="VAR: message herex"):
        shell.expand("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"}.get)


def test_backtick_escape() -> None:
    assert shell.expand("a`$B\\c", {"B": "x"}.get, escape="`") == "a$B\\c"


@given(st.text(alphabet=st.characters(blacklist_characters="$'\"\\<`"), max_size=30))
def test_plain_text_is_its_own_expansion(text: str) -> None:
    assert shell.expand(text, lambda _n: None) == text


@given(st.lists(st.text(alphabet="abc/._-", min_size=1, max_size=8), min_size=1, max_size=5))
def test_words_of_joined_words(parts: list[str]) -> None:
    assert shell.words("  ".join(parts), lambda _n: None) == parts


# --- the parser ---------------------------------------------------------------------------


def _error(text: str, **kwargs: object) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        parse(text, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_directives_escape_and_syntax() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM x\nRUN a `\n  b\nCOPY a\\b c\n")
    assert (df.syntax, df.escape) == ("docker/dockerfile:1", "`")
    run, copy = df.stages[0].instructions
    assert run.text == "a   b"
    assert copy_sources(copy, lambda _n: None) == (["a\\b"], "c")


def test_directives_only_at_the_top() -> None:
    df = parse("# comment\n# escape=`\nFROM x\nRUN a \\\nb\n")
    assert df.escape == "\\"
    assert df.stages[0].instructions[0].text == "a b"
    assert "only one escape" in str(_error("# escape=`\n# escape=\\\nFROM x\n"))
    assert "invalid escape token" in str(_error("# escape=x\nFROM x\n"))


def test_continuations_comments_and_empty_lines() -> None:
    text = "FROM x\nrun echo a \\\n# inside\n\n  b \\  \n c\nCMD d\n"
    run, cmd = parse(text).stages[0].instructions
    assert (run.keyword, run.line, run.text) == ("RUN", 2, "echo a   b  c")
    assert (cmd.line, cmd.text) == (7, "d")


def test_json_and_shell_forms() -> None:
    df = parse('FROM x\nCMD ["a", "b c"]\nENTRYPOINT [ nope\nRUN ["x"] y\nVOLUME ["/v"]\n')
    cmd, entry, run, volume = df.stages[0].instructions
    assert (cmd.args, cmd.text) == (["a", "b c"], "")
    assert (entry.args, entry.text) == (None, "[ nope")
    assert (run.args, run.text) == (None, '["x"] y')
    assert volume.args == ["/v"]
    assert "arrays must be comprised of strings" in str(_error("FROM x\nCMD [1]\n"))
    assert "JSON form" in str(_error("FROM x\nSHELL /bin/sh -c\n"))


def test_flags() -> None:
    text = "FROM --platform=linux/amd64 x\nCOPY --from=a --chown=1:1 --link s d\n"
    text += "RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b true\n"
    df = parse(text)
    copy, run = df.stages[0].instructions
    assert df.stages[0].platform == "linux/amd64"
    assert copy.flags == {"from": ["a"], "chown": ["1:1"], "link": ["true"]}
    assert run.flags["mount"] == ["type=cache,target=/a", "type=tmpfs,target=/b"]
    assert run.text == "true"
    assert "unknown flag: --bogus" in str(_error("FROM x\nCOPY --bogus=1 a b\n"))
    assert "unknown flag: --from" in str(_error("FROM x\nRUN --from=a true\n"))
    assert "duplicate flag specified: --from" in str(_error("FROM x\nCOPY --from=a --from=b a b\n"))
    assert "missing a value on flag: --from" in str(_error("FROM x\nCOPY --from a b\n"))


def test_heredocs() -> None:
    text = (
        "FROM x\nRUN <<EOF\necho $HOME\nEOF\n"
        'COPY <<-"A" <<B /dst/\n\tone $X\n\tA\ntwo $X\nB\n'
        "RUN cat <<EOF > /f\nbody\nEOF\n"
        "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n"
    )
    run, copy, cat, script = parse(text).stages[0].instructions
    assert run.heredocs[0].content == "echo $HOME\n"
    assert command_form(run, ["/bin/sh", "-c"]).argv == ["/bin/sh", "-c", "echo $HOME\n"]
    a, b = copy.heredocs
    assert (a.name, a.content, a.expand, a.chomp) == ("A", "one $X\n", False, True)
    assert (b.name, b.content, b.expand) == ("B", "two $X\n", True)
    assert copy_sources(copy, lambda _n: None) == ([], "/dst/")
    assert heredoc_content(copy, b, {"X": "2"}.get) == "two 2\n"
    assert heredoc_content(copy, a, {"X": "2"}.get) == "one $X\n"
    assert command_form(cat, ["sh", "-c"]).argv == ["sh", "-c", "cat <<EOF > /f\nbody\nEOF"]
    assert command_form(script, ["sh", "-c"]) == (
        ["sh", "-c", "/dev/pipes/EOF"],
        {"/dev/pipes/EOF": b"#!/usr/bin/env python3\nprint(1)\n"},
    )
    assert "unterminated heredoc" in str(_error("FROM x\nRUN <<EOF\nno end\n"))


def test_stages_and_global_args() -> None:
    text = "ARG BASE=alpine\nARG TAG=${BASE}-1\nFROM ${BASE}:$TAG AS Build\nFROM build\n"
    df = parse(text)
    assert [a.line for a in df.global_args] == [1, 2]
    first, second = df.stages
    assert (first.base, first.name, first.index) == ("alpine:alpine-1", "build", 0)
    assert (second.base, second.name) == ("build", None)
    assert parse(text, build_args={"BASE": "debian"}).stages[0].base == "debian:debian-1"
    assert parse("FROM ${B:-busybox}\n").stages[0].base == "busybox"
    assert (
        parse("FROM --platform=$BUILDPLATFORM x\n", predefined={"BUILDPLATFORM": "p"})
        .stages[0]
        .platform
        == "p"
    )


@pytest.mark.parametrize(
    ("text", "line", "instruction", "message"),
    [
        ("FROM x\nFOO bar\n", 2, "FOO", "unknown instruction: FOO"),
        ("RUN x\nFROM y\n", 1, "RUN", "no build stage in current context"),
        ("ARG A\n", 0, "", "dockerfile contains no stages to build"),
        ("# only a comment\n", 0, "", "file with no instructions"),
        ("FROM x\nCOPY a\n", 2, "COPY", "requires at least two arguments"),
        ("FROM x\nCOPY a <<EOF\nEOF\n", 2, "COPY", "cannot accept a heredoc as a destination"),
        ("FROM x\nENV A\n", 2, "ENV", "ENV must have two arguments"),
        ("FROM x\nENV A=1 B\n", 2, "ENV", 'can\'t find = in "B"'),
        ("FROM x\nLABEL\n", 2, "LABEL", "LABEL requires at least one argument"),
        ("FROM\n", 1, "FROM", "FROM requires either one or three arguments"),
        ("FROM a AS 1x\n", 1, "FROM", "invalid name for build stage"),
        ("FROM a AS b\nFROM c AS B\n", 2, "FROM", 'duplicate stage name "b"'),
        ("FROM ${NOPE}\n", 1, "FROM", "base name (${NOPE}) should not be blank"),
        ("FROM x\nWORKDIR\n", 2, "WORKDIR", "WORKDIR requires exactly one argument"),
        ("FROM x\nARG =1\n", 2, "ARG", "ARG names can not be blank"),
        ("FROM x\nONBUILD ONBUILD RUN x\n", 2, "ONBUILD", "Chaining ONBUILD"),
        ("FROM x\nHEALTHCHECK FOO x\n", 2, "HEALTHCHECK", 'Unknown type "FOO"'),
        ("FROM x\nHEALTHCHECK --interval=1us CMD x\n", 2, "HEALTHCHECK", "less than 1ms"),
        ("FROM x\nHEALTHCHECK --retries=-1 CMD x\n", 2, "HEALTHCHECK", "cannot be negative"),
    ],
)
def test_errors_name_file_line_and_instruction(
    text: str, line: int, instruction: str, message: str
) -> None:
    error = _error(text, file="app/Dockerfile")
    assert (error.file, error.line, error.instruction) == ("app/Dockerfile", line, instruction)
    assert message in str(error)
    assert str(error).startswith(f"app/Dockerfile:{line}: " if line else "app/Dockerfile: ")


def test_maintainer_and_onbuild_are_kept() -> None:
    maintainer, onbuild = (
        parse("FROM x\nMAINTAINER Me <m@e>\nONBUILD RUN make\n").stages[0].instructions
    )
    assert (maintainer.keyword, maintainer.text) == ("MAINTAINER", "Me <m@e>")
    assert (onbuild.keyword, onbuild.text) == ("ONBUILD", "RUN make")


# --- the helpers ---------------------------------------------------------------------------


def _inst(line: str):  # type: ignore[no-untyped-def]
    return parse(f"FROM x\n{line}\n").stages[0].instructions[0]


def test_key_values_new_and_legacy_forms() -> None:
    assert key_values(_inst('ENV A=1 B="two words" C=')) == [
        ("A", "1"), ("B", '"two words"'), ("C", "")]  # fmt: skip
    assert key_values(_inst("ENV GREETING hello  big world")) == [("GREETING", "hello  big world")]
    assert key_values(_inst('LABEL "com.x"="y z"')) == [('"com.x"', '"y z"')]
    values = dict(key_values(_inst('ENV A="a b" C=c\\ d')))
    assert {k: shell.expand(v, lambda _n: None) for k, v in values.items()} == {
        "A": "a b", "C": "c d"}  # fmt: skip


def test_arg_definitions() -> None:
    assert arg_definitions(_inst('ARG A B=2 C="x y"')) == [("A", None), ("B", "2"), ("C", '"x y"')]


def test_copy_sources_substitute_each_word() -> None:
    lookup = {"SRC": "a b", "DST": "/d"}.get
    assert copy_sources(_inst("COPY $SRC c* $DST"), lookup) == (["a b", "c*"], "/d")
    assert copy_sources(_inst('ADD ["$SRC", "x y", "$DST/"]'), lookup) == (["a b", "x y"], "/d/")
    with pytest.raises(DockerfileError, match="COPY"):
        copy_sources(_inst('COPY "a b" c'), lookup)  # quotes do not group: like Docker


def test_healthcheck() -> None:
    check = healthcheck(
        _inst("HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f x")
    )
    assert check.test == ["CMD-SHELL", "curl -f x"]
    assert (check.interval, check.timeout, check.retries) == (90 * 10**9, 500 * 10**6, 3)
    assert check.config() == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 90 * 10**9,
                              "Timeout": 500 * 10**6, "Retries": 3}  # fmt: skip
    assert healthcheck(_inst('HEALTHCHECK CMD ["/bin/check", "-q"]')).test == [
        "CMD", "/bin/check", "-q"]  # fmt: skip
    assert healthcheck(_inst("HEALTHCHECK NONE")).config() == {"Test": ["NONE"]}


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("0", 0), ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8),
     ("1.5h", 5400 * 10**9), ("1us", 1000), ("2µs", 2000), ("-1s", -(10**9)), ("1.s", 10**9)],
)  # fmt: skip
def test_go_durations(text: str, nanos: int) -> None:
    assert go_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1.5", ".s", "+"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(SyntaxProblem, match="time: "):
        go_duration(text)


def test_command_form() -> None:
    sh = ["/bin/sh", "-c"]
    assert command_form(_inst("RUN echo $A"), sh).argv == ["/bin/sh", "-c", "echo $A"]
    assert command_form(_inst('CMD ["a", "$A"]'), sh) == (["a", "$A"], {})
    assert command_form(_inst("ENTRYPOINT exec top"), ["pwsh", "-c"]).argv == [
        "pwsh", "-c", "exec top"]  # fmt: skip


@given(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), min_size=1,
                max_size=4, unique=True), st.text(alphabet="abc xyz/", max_size=10))  # fmt: skip
def test_env_pairs_round_trip(names: list[str], value: str) -> None:
    line = "ENV " + " ".join(f'{name}="{value}"' for name in names)
    pairs = key_values(_inst(line))
    assert [(k, shell.expand(v, lambda _n: None)) for k, v in pairs] == [(n, value) for n in names]
