"""`abrpipe serve`."""

from __future__ import annotations

import os

import click

from abrpipe.cli.common import console_err, emit_json, json_option, quiet_option


@click.command()
@click.argument("out", metavar="OUT", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port to listen on; 0 picks a free one (printed at start).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default is reachable from this machine only; another address "
                   "(0.0.0.0: every interface) lets anyone who can reach it read every file in OUT, and the "
                   "content keys of an output packaged with its keys embedded (OUT/clearkey.json, via /clearkey).")
@click.option("--open", "open_browser", is_flag=True, help="Open the player page in the default web browser.")
@json_option
@quiet_option
def serve(out, port, host, open_browser, as_json, quiet):
    """Serve OUT over HTTP, with a player page at /, to preview a ladder.

    \b
    abrpipe serve out/                     # http://127.0.0.1:8000/
    abrpipe serve out/ --port 0 --open     # a free port, and open the page

    Only regular files inside OUT are served (no directory listing, no path leading outside OUT,
    no symlink pointing outside it), with the HLS/DASH/CMAF MIME types, byte ranges, HEAD and CORS.
    The page plays master.m3u8 or manifest.mpd with Shaka Player (shipped with abrpipe), lists the
    renditions and lets you pin one. An output packaged with its ClearKey keys in OUT/clearkey.json
    is played through the license endpoint /clearkey. Ctrl-C stops the server. --json prints
    {"url", "host", "port", "root"} on stdout once it listens.
    """
    from abrpipe import serve as serve_mod

    def ready(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown}:{bound_port}/"
        if as_json:
            emit_json({"url": url, "host": bound_host, "port": bound_port, "root": os.path.abspath(out)})
        if not quiet:
            console_err().print(f"serving {os.path.abspath(out)} at {url} (Ctrl-C to stop)", highlight=False, markup=False)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        serve_mod.serve_forever(out, host=host, port=port, on_ready=ready)
    except KeyboardInterrupt:
        if not quiet:
            console_err().print("abrpipe: server stopped", highlight=False, markup=False)


COMMANDS = [serve]
