"""The click layer: parse options, call the stages, render results. No domain logic here.

stdout carries data (--json); stderr carries people's text, progress and errors. Every expected
failure is one line `abrpipe: error: ...` and an exit code from errors.ExitCode; --debug (or
ABRPIPE_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import click

from abrpipe import __version__, plugins, runner
from abrpipe.cli.common import console_err
from abrpipe.errors import AbrpipeError, ExitCode


class Interrupt(KeyboardInterrupt):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code


def _on_signal(signum, frame) -> None:
    runner.note_interrupt()
    raise Interrupt(128 + signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="abrpipe")
@click.option("--debug", is_flag=True, envvar="ABRPIPE_DEBUG", help="Show tracebacks and keep ffmpeg logs on failure.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Encode a video once into an adaptive-bitrate ladder and publish it as HLS and MPEG-DASH.

    \b
    abrpipe encode input.mp4                 # default profile, output in input-abr/
    abrpipe encode input.mp4 -o out/ --profile 720p
    abrpipe ladder input.mp4 --profile default
    abrpipe validate out/
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    # Every command is core: a module that fails to import is a broken installation and must fail
    # loudly here, never leave the CLI silently without that command.
    from abrpipe.cli import (
        batch_cmd,
        encode_cmd,
        info_cmds,
        pertitle_cmd,
        profiles_cmd,
        report_cmd,
        serve_cmd,
        validate_cmd,
    )

    cli.add_command(encode_cmd.encode)
    cli.add_command(info_cmds.probe_cmd)
    cli.add_command(info_cmds.ladder)
    cli.add_command(profiles_cmd.profiles)
    for module in (validate_cmd, batch_cmd, pertitle_cmd, serve_cmd, report_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv or sys.argv[1:]) or os.environ.get("ABRPIPE_DEBUG") == "1"
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    code: int = ExitCode.OK
    try:
        returned = cli.main(args=argv, prog_name="abrpipe", standalone_mode=False)
        if isinstance(returned, int):  # click returns ctx.exit(N) / Exit(N) codes when not standalone
            code = returned
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        console_err().print("abrpipe: aborted")
        code = ExitCode.INTERRUPTED
    except AbrpipeError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc)
        code = exc.exit_code
        if isinstance(exc.__context__, Interrupt):
            code = exc.__context__.code
    except KeyboardInterrupt as exc:
        runner.stop_all()
        console_err().print("abrpipe: interrupted; nothing was published", style="yellow", highlight=False)
        code = exc.code if isinstance(exc, Interrupt) else ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        console_err().print(
            f"abrpipe: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            style="red",
            highlight=False,
            markup=False,
            soft_wrap=True,  # one line per error, whatever the terminal width
        )
        code = ExitCode.ERROR
    finally:
        runner.stop_all()
        for warning in plugins.unshown_warnings():  # a broken plug-in: said once, never a crash
            console_err().print(f"abrpipe: warning: {warning}", style="yellow", highlight=False, markup=False, soft_wrap=True)
    sys.exit(int(code))


def _print_error(exc: AbrpipeError) -> None:
    err = console_err()
    lines = exc.message.splitlines() or [""]
    err.print(f"abrpipe: error: {lines[0]}", style="red", highlight=False, markup=False, soft_wrap=True)
    for line in lines[1:]:
        err.print(f"abrpipe: error: {line}", style="red", highlight=False, markup=False, soft_wrap=True)
    if exc.hint:
        err.print(f"abrpipe: hint: {exc.hint}", highlight=False, markup=False, soft_wrap=True)
    stderr_tail = getattr(exc, "stderr_tail", "")
    if stderr_tail:
        err.print(stderr_tail, style="dim", highlight=False, markup=False)
    log_path = getattr(exc, "log_path", None)
    if log_path and os.path.exists(log_path):
        err.print(f"abrpipe: ffmpeg log: {log_path}", highlight=False, markup=False)
