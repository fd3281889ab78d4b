"""Profiles: the schema and every load-time rule (errors `FILE: field.path: message`), extends,
TOML/YAML equivalence, where profiles come from (built-ins, ABRPIPE_PROFILE_PATH, --profile PATH,
plug-ins), and the `abrpipe profiles` commands."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from abrpipe import codecs, plugins, registry
from abrpipe.cli import cli
from abrpipe.errors import ExitCode, ProfileError
from abrpipe.profile import AUDIO_FIELDS, RUNG_FIELDS, TOP_FIELDS, dump_toml, to_schema

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIST = ROOT / "tests" / "plugin_dist"
BUILTINS = ("default", "1080p", "720p", "480p", "hevc", "av1", "vp9", "multi-codec", "crf", "mobile", "audio-only")

# A valid two-rung profile; each rule test below breaks one thing in it.
BASE = """\
schema = 1
codec = "h264"
gop = 2
segment = 6

[[rungs]]
size = "1280x720"
bitrate = "3000k"

[[rungs]]
size = "640x360"
bitrate = "800k"

[[audio]]
codec = "aac"
bitrate = "128k"
channels = 2
"""


@pytest.fixture(autouse=True)
def fresh_registries():
    """Each test sees the entry points as they are now (some tests fake plug-ins)."""
    registry.reset()
    codecs.reset()
    plugins.clear_warnings()
    yield
    registry.reset()
    codecs.reset()
    plugins.clear_warnings()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Work in tmp_path so that error messages show the relative path profiles/x.toml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    return tmp_path


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems(ref: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        registry.load(ref)
    return info.value.problems if hasattr(info.value, "problems") else [info.value.message]


# ---------------------------------------------------------------------------------------------
# One test per rule: (what is written, the exact error line expected)

RULES = {
    "bitrate-unit": (
        BASE + '\n[[rungs]]\nsize = "416x234"\nbitrate = "145"\n',
        "profiles/x.toml: rungs[2].bitrate: expected a bitrate like 800k or 2.5M",
    ),
    "bitrate-missing": (
        BASE.replace('bitrate = "800k"\n', ""),
        "profiles/x.toml: rungs[1].bitrate: missing: expected a bitrate like 800k or 2.5M",
    ),
    "unknown-top-key": (
        BASE.replace("gop = 2", "gop = 2\nkeyint = 48"),
        "profiles/x.toml: keyint: unknown key (expected one of: ",
    ),
    "unknown-rung-key": (
        BASE.replace('bitrate = "800k"', 'bitrate = "800k"\nfps = 30'),
        "profiles/x.toml: rungs[1].fps: unknown key (expected one of: size, height, bitrate, maxrate, bufsize, rate_control, crf, max_fps, codec, profile, level)",
    ),
    "unknown-audio-key": (
        BASE + 'language = "eng"\n',
        "profiles/x.toml: audio[0].language: unknown key (expected one of: codec, bitrate, channels, sample_rate)",
    ),
    "schema-version": (
        BASE.replace("schema = 1", "schema = 2"),
        "profiles/x.toml: schema: unsupported schema version 2 (this abrpipe reads version 1)",
    ),
    "segment-multiple-of-gop": (
        BASE.replace("segment = 6", "segment = 5"),
        "profiles/x.toml: segment: must be a whole multiple of gop (5 s is not a multiple of 2 s)",
    ),
    "rungs-descending": (
        BASE.replace('size = "640x360"', 'size = "1920x1080"'),
        "profiles/x.toml: rungs[1]: rungs must descend within each codec (highest first): h264 1920x1080 @ 800k comes after rungs[0] 720p @ 3M",
    ),
    "same-size-bitrate-descending": (
        BASE.replace('size = "640x360"\nbitrate = "800k"', 'size = "1280x720"\nbitrate = "4500k"'),
        "profiles/x.toml: rungs[1]: rungs must descend within each codec (highest first): h264 1280x720 @ 4.5M comes after rungs[0] 720p @ 3M",
    ),
    "hevc-needs-fmp4": (
        BASE.replace('codec = "h264"', 'codec = "hevc"\ncontainer = "ts"'),
        'profiles/x.toml: codec: hevc needs container = "fmp4" (it cannot be carried in "ts")',
    ),
    "av1-rung-needs-fmp4": (
        BASE.replace('codec = "h264"', 'codec = "h264"\ncontainer = "ts"').replace('size = "640x360"', 'codec = "av1"\nsize = "640x360"'),
        'profiles/x.toml: rungs[1].codec: av1 needs container = "fmp4" (it cannot be carried in "ts")',
    ),
    "ts-not-written": (
        BASE.replace('codec = "h264"', 'codec = "h264"\ncontainer = "ts"'),
        'profiles/x.toml: container: "ts" is not written: every rendition is CMAF fMP4, shared by HLS and DASH (use "fmp4")',
    ),
    "crf-with-2pass": (
        BASE.replace('bitrate = "800k"', 'bitrate = "800k"\nrate_control = "2pass"\ncrf = 23'),
        'profiles/x.toml: rungs[1].crf: only with rate_control = "crf" (this rung is "2pass": two-pass encodes to a bitrate, not a quality)',
    ),
    "crf-with-vbr": (
        BASE.replace('bitrate = "800k"', 'bitrate = "800k"\ncrf = 23'),
        'profiles/x.toml: rungs[1].crf: only with rate_control = "crf" (this rung is "vbr": vbr encodes to a bitrate)',
    ),
    "crf-range-per-codec": (
        BASE.replace("gop = 2", 'gop = 2\nrate_control = "crf"\ncrf = 60'),
        "profiles/x.toml: rungs[0].crf: h264 takes a CRF from 0 to 51, not 60",
    ),
    "svt-av1-no-two-pass": (
        BASE.replace('codec = "h264"', 'codec = "av1"\nrate_control = "2pass"'),
        "profiles/x.toml: rungs[0].rate_control: av1 (libsvtav1) cannot do two-pass through FFmpeg (expected one of: vbr, crf)",
    ),
    "rate-control-name": (
        BASE.replace("gop = 2", 'gop = 2\nrate_control = "cbr"'),
        "profiles/x.toml: rate_control: expected one of: vbr, crf, 2pass",
    ),
    "codec-profile-name": (
        BASE.replace('bitrate = "3000k"', 'bitrate = "3000k"\nprofile = "main10"'),
        "profiles/x.toml: rungs[0].profile: h264 has no profile 'main10' (expected one of: baseline, main, high)",
    ),
    "hevc-profile-name": (
        BASE.replace('codec = "h264"', 'codec = "hevc"').replace('bitrate = "3000k"', 'bitrate = "3000k"\nprofile = "high"'),
        "profiles/x.toml: rungs[0].profile: hevc has no profile 'high' (expected one of: main)",
    ),
    "level-name": (
        BASE.replace('bitrate = "3000k"', 'bitrate = "3000k"\nlevel = "4.7"'),
        "profiles/x.toml: rungs[0].level: h264 has no level '4.7' (expected one of: ",
    ),
    "level-too-small-for-size": (
        BASE.replace('bitrate = "3000k"', 'bitrate = "3000k"\nlevel = "3.0"'),
        "profiles/x.toml: rungs[0].level: H.264 level 3 allows frames up to 1620 macroblocks; 1280x720 has 3600",
    ),
    "hevc-level-too-small": (
        BASE.replace('codec = "h264"', 'codec = "hevc"').replace('bitrate = "3000k"', 'bitrate = "3000k"\nlevel = "3"'),
        "profiles/x.toml: rungs[0].level: HEVC level 3 allows pictures up to 552960 luma samples; 1280x720 has 921600",
    ),
    "vp9-takes-no-level": (
        BASE.replace('codec = "h264"', 'codec = "vp9"').replace('bitrate = "3000k"', 'bitrate = "3000k"\nlevel = "4.1"'),
        "profiles/x.toml: rungs[0].level: vp9 takes no level",
    ),
    "unknown-video-codec": (
        BASE.replace('codec = "h264"', 'codec = "h266"'),
        "profiles/x.toml: codec: unknown video codec 'h266' (expected one of: ",
    ),
    "audio-codec-as-video": (
        BASE.replace('size = "640x360"', 'codec = "opus"\nsize = "640x360"'),
        "profiles/x.toml: rungs[1].codec: 'opus' is an audio codec, not a video one (expected one of: ",
    ),
    "unknown-audio-codec": (
        BASE.replace('codec = "aac"', 'codec = "mp3"'),
        "profiles/x.toml: audio[0].codec: unknown audio codec 'mp3' (expected one of: aac, ac3, eac3, he-aac, he-aac-v2, opus)",
    ),
    "ac3-channels": (
        BASE.replace("channels = 2", "channels = 8").replace('codec = "aac"', 'codec = "ac3"').replace('"128k"', '"448k"'),
        "profiles/x.toml: audio[0].channels: ac3 carries 1, 2, 6 channels, not 8",
    ),
    "opus-sample-rate": (
        BASE.replace('codec = "aac"', 'codec = "opus"') + "sample_rate = 44100\n",
        "profiles/x.toml: audio[0].sample_rate: opus takes sample rates 48000, not 44100",
    ),
    "he-aac-v2-stereo-only": (
        BASE.replace('codec = "aac"', 'codec = "he-aac-v2"').replace('"128k"', '"48k"').replace("channels = 2", "channels = 6"),
        "profiles/x.toml: audio[0].channels: he-aac-v2 carries 2 channels, not 6",
    ),
    "channels-value": (
        BASE.replace("channels = 2", "channels = 3"),
        "profiles/x.toml: audio[0].channels: expected 1, 2, 6 (5.1) or 8 (7.1)",
    ),
    "audio-duplicate": (
        BASE + '\n[[audio]]\ncodec = "aac"\nbitrate = "128k"\nchannels = 2\n',
        "profiles/x.toml: audio[1]: the same codec, bitrate and channels as audio[0] (aac 128k 2ch)",
    ),
    "preset-for-x264": (
        BASE.replace("gop = 2", 'gop = 2\npreset = "13"'),
        "profiles/x.toml: preset: h264 presets are names, not '13' (expected one of: ultrafast, ",
    ),
    "maxrate-below-bitrate": (
        BASE.replace('bitrate = "800k"', 'bitrate = "800k"\nmaxrate = "700k"'),
        "profiles/x.toml: rungs[1].maxrate: must be >= bitrate (700k < 800k)",
    ),
    "odd-size": (
        BASE.replace("640x360", "641x360"),
        "profiles/x.toml: rungs[1].size: dimensions must be even (4:2:0 video)",
    ),
    "size-format": (
        BASE.replace("640x360", "640 by 360"),
        "profiles/x.toml: rungs[1].size: expected a size like 1920x1080",
    ),
    "size-and-height": (
        BASE.replace('size = "640x360"', 'size = "640x360"\nheight = 360'),
        "profiles/x.toml: rungs[1]: give size or height, not both",
    ),
    "gop-value": (
        BASE.replace("gop = 2", "gop = -1"),
        "profiles/x.toml: gop: expected a positive duration in seconds like 2",
    ),
    "outputs-value": (
        BASE.replace("gop = 2", 'gop = 2\noutputs = ["hls", "smooth"]'),
        'profiles/x.toml: outputs: expected a non-empty list from ["hls", "dash"]',
    ),
    "audio-tracks-value": (
        BASE.replace("gop = 2", "gop = 2\naudio_tracks = 3"),
        'profiles/x.toml: audio_tracks: expected "all", "first", or a list of track indices / languages like ["eng", 1]',
    ),
    "encoder-options-codec": (
        BASE + "\n[encoder_options.h246]\ntune = \"film\"\n",
        "profiles/x.toml: encoder_options.h246: unknown codec 'h246' (known: ",
    ),
    "overrides-need-extends": (
        BASE + "\n[[rung_overrides]]\nindex = 0\nbitrate = \"2M\"\n",
        "profiles/x.toml: rung_overrides: only allowed with extends (it edits the parent's rungs)",
    ),
    "nothing-to-encode": (
        "schema = 1\naudio = []\n",
        "profiles/x.toml: rungs: a profile needs at least one video rung or one audio rung",
    ),
    "toml-syntax": (
        BASE.replace('gop = 2', 'gop = = 2'),
        "profiles/x.toml: not valid TOML (Invalid value (at line 3, column 7))",
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_names_file_field_and_expectation(in_tmp, rule):
    text, expected = RULES[rule]
    write(in_tmp / "profiles" / "x.toml", text)
    found = problems("profiles/x.toml")
    assert any(p.startswith(expected) for p in found), f"expected a line starting {expected!r}, got {found}"


def test_the_base_profile_of_the_rule_tests_is_valid(in_tmp):
    write(in_tmp / "profiles" / "x.toml", BASE)
    p = registry.load("profiles/x.toml")
    assert [(r.width, r.height, r.bitrate_kbps) for r in p.rungs] == [(1280, 720, 3000), (640, 360, 800)]


def test_every_problem_of_a_file_is_reported_at_once(in_tmp):
    text = BASE.replace("segment = 6", "segment = 5").replace('"800k"', '"800"').replace('"aac"', '"mp3"')
    write(in_tmp / "profiles" / "x.toml", text)
    found = problems("profiles/x.toml")
    fields = [line.split(": ")[1] for line in found]
    assert fields == ["segment", "rungs[1].bitrate", "audio[0].codec"], found


def test_yaml_errors_name_the_file_and_field(in_tmp):
    write(in_tmp / "profiles" / "y.yaml", """\
        schema: 1
        rungs:
          - size: 1280x720
            bitrate: 3000k
          - size: 640x360
            bitrate: 800
        """)
    assert problems("profiles/y.yaml") == ["profiles/y.yaml: rungs[1].bitrate: expected a bitrate like 800k or 2.5M"]
    write(in_tmp / "profiles" / "z.yaml", "schema: 1\nrungs: [\n")
    assert problems("profiles/z.yaml")[0].startswith("profiles/z.yaml: not valid YAML (")


def test_multi_codec_rungs_descend_per_codec(in_tmp):
    write(in_tmp / "profiles" / "m.toml", """\
        schema = 1
        [[rungs]]
        size = "1280x720"
        bitrate = "3M"
        [[rungs]]
        size = "640x360"
        bitrate = "800k"
        [[rungs]]
        codec = "hevc"
        size = "1280x720"
        bitrate = "2M"
        [[rungs]]
        codec = "hevc"
        size = "640x360"
        bitrate = "500k"
        """)
    p = registry.load("profiles/m.toml")
    assert p.codecs == ("h264", "hevc")


def test_he_aac_above_64k_is_a_warning_and_strict_validate_fails(in_tmp):
    path = write(in_tmp / "profiles" / "he.toml", BASE.replace('codec = "aac"', 'codec = "he-aac"').replace('"128k"', '"96k"'))
    p = registry.load(path)
    assert p.warnings == (
        "profiles/he.toml: audio[0].bitrate: he-aac above 64k: Apple's HLS authoring spec (2.4) says not to use HE-AAC "
        "above 64 kb/s; use aac",
    )
    lenient = CliRunner().invoke(cli, ["profiles", "validate", path])
    strict = CliRunner().invoke(cli, ["profiles", "validate", "--strict", path])
    assert lenient.exit_code == 0 and "he-aac above 64k" in lenient.stderr
    assert strict.exit_code == ExitCode.PROFILE


def test_capped_crf_and_per_rung_rate_control(in_tmp):
    write(in_tmp / "profiles" / "rc.toml", """\
        schema = 1
        rate_control = "crf"
        crf = 22
        [[rungs]]
        size = "1280x720"
        bitrate = "3M"
        maxrate = "4.5M"
        [[rungs]]
        size = "640x360"
        bitrate = "800k"
        rate_control = "2pass"
        [[rungs]]
        size = "416x234"
        bitrate = "145k"
        crf = 26
        """)
    p = registry.load("profiles/rc.toml")
    assert [(p.rate_control_of(r), p.crf_of(r), r.maxrate_kbps) for r in p.rungs] == [
        ("crf", 22, 4500), ("2pass", None, 880), ("crf", 26, 160)]
    # A rung that gives no rate control follows the profile's, also when a tool changes it later.
    assert dataclasses.replace(p, rate_control="vbr").rate_control_of(p.rungs[0]) == "vbr"


# ---------------------------------------------------------------------------------------------
# extends


def test_extends_overrides_one_rung_and_removes_others(in_tmp):
    write(in_tmp / "profiles" / "team.toml", """\
        schema = 1
        extends = "default"
        description = "default, with a cheaper 540p and without the 1080p rungs"
        remove_rungs = [0, 1]

        [[rung_overrides]]
        index = 4
        bitrate = "1800k"
        max_fps = 30
        """)
    team = registry.load("profiles/team.toml")
    default = registry.load("default")
    assert len(team.rungs) == len(default.rungs) - 2
    assert team.rungs[2].label == "h264 960x540 @ 1.8M" and team.rungs[2].max_fps == 30
    assert team.rungs[0] == default.rungs[2]  # the rest is inherited as is
    assert team.audio == default.audio and team.gop_s == default.gop_s
    assert team.description.startswith("default, with")


def test_extends_chain_and_encoder_options_merge(in_tmp):
    write(in_tmp / "profiles" / "a.toml", """\
        schema = 1
        extends = "720p"
        [encoder_options.h264]
        x264-params = "aq-mode=3"
        tune = "film"
        """)
    write(in_tmp / "profiles" / "b.toml", """\
        schema = 1
        extends = "a.toml"
        preset = "fast"
        [encoder_options.h264]
        tune = "animation"
        """)
    b = registry.load("profiles/b.toml")
    assert b.options_for("h264") == {"x264-params": "aq-mode=3", "tune": "animation"}
    assert b.preset == "fast" and len(b.rungs) == 4


def test_extends_replaces_size_with_height(in_tmp):
    write(in_tmp / "profiles" / "h.toml", """\
        schema = 1
        extends = "720p"
        [[rung_overrides]]
        index = -1
        height = 240
        """)
    last = registry.load("profiles/h.toml").rungs[-1]
    assert (last.width, last.height, last.bitrate_kbps) == (None, 240, 145)


def test_extends_errors(in_tmp):
    write(in_tmp / "profiles" / "bad-index.toml", 'schema = 1\nextends = "720p"\n[[rung_overrides]]\nindex = 9\nbitrate = "1M"\n')
    assert problems("profiles/bad-index.toml") == ["profiles/bad-index.toml: rung_overrides[0].index: no rung 9 in the parent (it has 4)"]
    write(in_tmp / "profiles" / "bad-key.toml", 'schema = 1\nextends = "720p"\n[[rung_overrides]]\nindex = 0\nbitrat = "1M"\n')
    assert problems("profiles/bad-key.toml")[0].startswith("profiles/bad-key.toml: rung_overrides[0].bitrat: unknown key")
    write(in_tmp / "profiles" / "nope.toml", 'schema = 1\nextends = "no-such-profile"\n')
    assert problems("profiles/nope.toml")[0].startswith("profiles/nope.toml: extends: unknown profile 'no-such-profile'")
    write(in_tmp / "profiles" / "loop1.toml", 'schema = 1\nextends = "loop2.toml"\n')
    write(in_tmp / "profiles" / "loop2.toml", 'schema = 1\nextends = "loop1.toml"\n')
    assert "extends: a loop (profiles/loop1.toml -> profiles/loop2.toml -> profiles/loop1.toml)" in problems("profiles/loop1.toml")[0]


def test_a_problem_in_the_parent_names_the_parent(in_tmp):
    write(in_tmp / "profiles" / "parent.toml", BASE.replace('"800k"', '"800"'))
    write(in_tmp / "profiles" / "child.toml", 'schema = 1\nextends = "parent.toml"\npreset = "fast"\n')
    assert problems("profiles/child.toml") == ["profiles/parent.toml: rungs[1].bitrate: expected a bitrate like 800k or 2.5M"]


def test_a_problem_made_by_an_override_names_the_child(in_tmp):
    write(in_tmp / "profiles" / "child.toml", 'schema = 1\nextends = "720p"\n[[rung_overrides]]\nindex = 1\nsize = "1920x1080"\n')
    assert problems("profiles/child.toml")[0].startswith("profiles/child.toml: rungs[1]: rungs must descend")


# ---------------------------------------------------------------------------------------------
# formats and sources


def test_toml_and_yaml_are_the_same_schema(in_tmp):
    write(in_tmp / "profiles" / "t.toml", """\
        schema = 1
        description = "both formats"
        codec = "hevc"
        rate_control = "crf"
        crf = 24
        gop = 2
        segment = 4
        outputs = ["dash"]
        audio_tracks = ["eng", 1]
        [encoder_options.hevc]
        x265-params = "aq-mode=2"
        [[rungs]]
        size = "1920x1080"
        bitrate = "4.5M"
        maxrate = "6M"
        level = "4.1"
        [[rungs]]
        height = 360
        bitrate = "500k"
        max_fps = 30
        profile = "main"
        [[audio]]
        codec = "aac"
        bitrate = "64k"
        channels = 2
        [[audio]]
        codec = "eac3"
        bitrate = "192k"
        channels = 6
        """)
    write(in_tmp / "profiles" / "t.yaml", """\
        schema: 1
        description: both formats
        codec: hevc
        rate_control: crf
        crf: 24
        gop: 2
        segment: 4
        outputs: [dash]
        audio_tracks: [eng, 1]
        encoder_options:
          hevc: {x265-params: aq-mode=2}
        rungs:
          - {size: 1920x1080, bitrate: 4.5M, maxrate: 6M, level: 4.1}
          - {height: 360, bitrate: 500k, max_fps: 30, profile: main}
        audio:
          - {codec: aac, bitrate: 64k, channels: 2}
          - {codec: eac3, bitrate: 192k, channels: 6}
        """)

    def content(p):
        return {k: v for k, v in p.to_dict().items() if k not in ("name", "path", "origin")}

    assert content(registry.load("profiles/t.toml")) == content(registry.load("profiles/t.yaml"))


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profiles_load_and_show_round_trips(name):
    p = registry.load(name)
    assert p.origin == "builtin" and not p.warnings
    data = to_schema(p)
    again = tomllib.loads(dump_toml(data))
    assert again == data
    assert yaml.safe_load(yaml.safe_dump(data)) == data


def test_shown_profile_is_a_valid_profile_file(tmp_path):
    result = CliRunner().invoke(cli, ["profiles", "show", "multi-codec"])
    assert result.exit_code == 0, result.output
    write(tmp_path / "copy.toml", result.stdout)
    copy = registry.load(str(tmp_path / "copy.toml"))
    original = registry.load("multi-codec")
    assert copy.rungs == original.rungs and copy.audio == original.audio and copy.gop_s == original.gop_s
    yaml_out = CliRunner().invoke(cli, ["profiles", "show", "multi-codec", "--format", "yaml"]).stdout
    write(tmp_path / "copy.yaml", yaml_out)
    assert registry.load(str(tmp_path / "copy.yaml")).rungs == original.rungs


def test_user_profile_path_shadows_and_extends_builtins(tmp_path, monkeypatch):
    first, second = tmp_path / "team", tmp_path / "site"
    write(first / "default.toml", 'schema = 1\nextends = "default"\ndescription = "team default"\npreset = "fast"\n')
    write(second / "default.toml", 'schema = 1\nextends = "default"\ndescription = "site default"\n')
    write(second / "podcast.yaml", "schema: 1\nrungs: []\naudio: [{codec: aac, bitrate: 64k, channels: 1}]\n")
    monkeypatch.setenv("ABRPIPE_PROFILE_PATH", os.pathsep.join([str(first), str(second)]))
    team = registry.load("default")
    assert team.description == "team default" and team.origin == f"user ({first})"
    assert team.preset == "fast" and len(team.rungs) == 9  # the built-in default's rungs
    assert registry.load("podcast").audio[0].channels == 1
    listed = {(r["name"], r["origin"], r["shadowed"]) for r in json.loads(
        CliRunner().invoke(cli, ["profiles", "list", "--all", "--json"]).stdout)}
    assert ("default", f"user ({first})", False) in listed
    assert ("default", f"user ({second})", True) in listed
    assert ("default", "builtin", True) in listed
    assert ("podcast", f"user ({second})", False) in listed


def test_profile_option_takes_a_path(tmp_path):
    path = write(tmp_path / "sub dir" / "mine.toml", BASE)
    result = CliRunner().invoke(cli, ["ladder", "--profile", path, "--json"])
    assert result.exit_code == 0, result.output
    assert [r["size"] for r in json.loads(result.stdout)["rungs"]] == ["1280x720", "640x360"]
    missing = CliRunner().invoke(cli, ["ladder", "--profile", str(tmp_path / "nope.toml"), "--json"])
    assert isinstance(missing.exception, ProfileError) and "no such profile file" in str(missing.exception)


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(ProfileError) as info:
        registry.load("nonesuch")
    assert info.value.message == "unknown profile 'nonesuch'" and "multi-codec" in info.value.hint


# ---------------------------------------------------------------------------------------------
# the CLI


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_validate_exits_non_zero_with_every_problem(in_tmp):
    write(in_tmp / "profiles" / "x.toml", RULES["bitrate-unit"][0])
    write(in_tmp / "profiles" / "y.toml", RULES["segment-multiple-of-gop"][0])
    write(in_tmp / "profiles" / "ok.toml", BASE)
    result = run_cli("profiles", "validate", "profiles/x.toml", "profiles/y.toml", "profiles/ok.toml")
    assert result.returncode == ExitCode.PROFILE
    assert RULES["bitrate-unit"][1] in result.stderr.splitlines()
    assert RULES["segment-multiple-of-gop"][1].replace("x.toml", "y.toml") in result.stderr.splitlines()
    assert "3 profile(s) checked: 2 problem(s)" in result.stderr
    assert run_cli("profiles", "validate", "profiles/ok.toml", "default", "hevc").returncode == 0


def test_validate_without_arguments_checks_every_builtin():
    result = CliRunner().invoke(cli, ["profiles", "validate", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and {Path(p).stem for p in data["checked"]} >= set(BUILTINS)


def test_list_shows_each_builtin_with_its_origin_and_codecs():
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["profiles", "list", "--json"]).stdout)}
    assert set(BUILTINS) <= set(rows)
    assert all(rows[n]["origin"] == "builtin" and rows[n]["error"] is None for n in BUILTINS)
    assert rows["multi-codec"]["codecs"] == ["h264", "hevc", "av1"]
    assert rows["audio-only"]["codecs"] == [] and rows["audio-only"]["rungs"] == 0


def test_schema_documents_every_field_and_codec():
    text = CliRunner().invoke(cli, ["profiles", "schema"]).stdout
    for key in (*TOP_FIELDS, *RUNG_FIELDS, *AUDIO_FIELDS):
        assert f"\n  {key} " in text, key
    for codec in ("h264", "hevc", "vp9", "av1", "av1-aom", "h264-nvenc", "hevc-videotoolbox", "aac", "he-aac", "opus", "ac3", "eac3"):
        assert f"\n  {codec} " in text, codec


def test_profiles_doc_documents_every_field_and_builtin():
    doc = (ROOT / "docs" / "PROFILES.md").read_text(encoding="utf-8")
    for key in (*TOP_FIELDS, *RUNG_FIELDS, *AUDIO_FIELDS):
        assert f"`{key}`" in doc, key
    for name in BUILTINS:
        assert f"`{name}`" in doc, name


def test_profiles_doc_examples_are_valid_profiles(tmp_path):
    doc = (ROOT / "docs" / "PROFILES.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(toml|yaml)\n(.*?)```", doc, flags=re.S)
    examples = [(fmt, text) for fmt, text in blocks if text.startswith(("schema = 1", "schema: 1"))]
    assert len(examples) >= 5
    for n, (fmt, text) in enumerate(examples):
        registry.load(write(tmp_path / f"example{n}.{fmt}", text))


# ---------------------------------------------------------------------------------------------
# plug-ins


class FakeDist:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeEntryPoint:
    """An entry point of an installed distribution, as importlib.metadata reports it."""

    def __init__(self, name: str, value: str, group: str, dist: str) -> None:
        self.name, self.value, self.group, self.dist = name, value, group, FakeDist(dist)

    def load(self):
        return metadata.EntryPoint(self.name, self.value, self.group).load()


@pytest.fixture
def fake_plugins(monkeypatch):
    """Entry points as if tests/plugin_dist were installed, plus whatever the test adds."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIST))
    real = metadata.entry_points
    extra: list[FakeEntryPoint] = [
        FakeEntryPoint("demo", "abrpipe_demo_plugin:profile_dirs", "abrpipe.profiles", "abrpipe-demo-plugin"),
        FakeEntryPoint("demo", "abrpipe_demo_plugin:encoders", "abrpipe.encoders", "abrpipe-demo-plugin"),
    ]

    def entry_points(**kwargs):
        group = kwargs.get("group")
        return [*real(**kwargs), *(ep for ep in extra if ep.group == group)]

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    return extra


def test_plugin_contributes_a_profile_and_an_encoder(fake_plugins, clip_360p, tmp_path):
    profile = registry.load("demo-fast")
    assert profile.origin == "plug-in abrpipe-demo-plugin" and profile.codecs == ("h264-fast",)
    assert codecs.origin("h264-fast") == "plug-in abrpipe-demo-plugin"
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["profiles", "list", "--json"]).stdout)}
    assert rows["demo-fast"]["origin"] == "plug-in abrpipe-demo-plugin" and rows["default"]["origin"] == "builtin"
    schema = CliRunner().invoke(cli, ["profiles", "schema"]).stdout
    assert "h264-fast" in schema and "(plug-in abrpipe-demo-plugin)" in schema
    dry = CliRunner().invoke(cli, ["encode", str(clip_360p), "-o", str(tmp_path / "out"), "-p", "demo-fast", "--dry-run", "--json"])
    argv = json.loads(dry.stdout)["commands"][0]["argv"]
    assert argv[argv.index("-tune:v:0") + 1] == "fastdecode" and argv[argv.index("-c:v:0") + 1] == "libx264"


def test_plugin_cannot_replace_a_builtin_encoder(fake_plugins, monkeypatch):
    import abrpipe_demo_plugin

    monkeypatch.setattr(abrpipe_demo_plugin, "encoders", lambda: [codecs.X264("h264", "libx264", "avc", "impostor")])
    assert codecs.get("h264").description == "H.264/AVC (x264)"
    assert any("codec name 'h264' is taken (by builtin); ignored" in w for w in plugins.warnings)


def test_broken_plugins_are_warnings_naming_the_distribution(fake_plugins):
    fake_plugins += [
        FakeEntryPoint("broken", "abrpipe_no_such_module:profiles", "abrpipe.profiles", "abrpipe-broken-profiles"),
        FakeEntryPoint("broken", "abrpipe_no_such_module:encoders", "abrpipe.encoders", "abrpipe-broken-encoders"),
        FakeEntryPoint("raises", "abrpipe_demo_plugin:missing_attribute", "abrpipe.encoders", "abrpipe-broken-attr"),
    ]
    result = CliRunner().invoke(cli, ["profiles", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert "demo-fast" in {r["name"] for r in json.loads(result.stdout)}  # the healthy plug-in still works
    stderr = result.stderr
    assert "distribution 'abrpipe-broken-profiles'" in stderr and "No module named 'abrpipe_no_such_module'" in stderr
    assert "distribution 'abrpipe-broken-encoders'" in stderr and "distribution 'abrpipe-broken-attr'" in stderr
    assert stderr.count("abrpipe-broken-profiles") == 1  # each warning once
    assert registry.load("default").rungs  # and the built-ins load


def test_plugin_whose_factory_fails_is_a_warning(fake_plugins, monkeypatch):
    import abrpipe_demo_plugin

    def explode():
        raise RuntimeError("no licence file")

    monkeypatch.setattr(abrpipe_demo_plugin, "encoders", explode)
    assert "h264" in codecs.registry() and "h264-fast" not in codecs.registry()
    assert plugins.warnings == ["encoder plug-in from distribution 'abrpipe-demo-plugin' failed: RuntimeError: no licence file"]
    with pytest.raises(ProfileError) as info:  # its profile now names a codec nobody provides
        registry.load("demo-fast")
    assert ": codec: unknown video codec 'h264-fast'" in str(info.value)


def _wheel_from(src: Path, out_dir: Path) -> Path:
    """Build a wheel of tests/plugin_dist from its pyproject.toml (no build backend needed: the
    wheel format is a zip with a dist-info directory, PEP 427)."""
    meta = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    name, version = meta["name"], meta["version"]
    stem = f"{name.replace('-', '_')}-{version}"
    files: dict[str, bytes] = {}
    for path in sorted((src / "abrpipe_demo_plugin").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(src).as_posix()] = path.read_bytes()
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in meta["entry-points"].items()
    )
    files[f"{stem}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{stem}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{stem}.dist-info/entry_points.txt"] = entry_points.encode()
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()]
    files[f"{stem}.dist-info/RECORD"] = ("\n".join([*record, f"{stem}.dist-info/RECORD,,"]) + "\n").encode()
    wheel = out_dir / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.mark.slow
def test_installed_plugin_distribution(tmp_path, clip_360p):
    """pip-install the plug-in distribution into a directory on PYTHONPATH: its entry points are found
    through the installed metadata, with no faking."""
    wheel = _wheel_from(PLUGIN_DIST, tmp_path)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("profiles", "list", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["demo-fast"]["origin"] == "plug-in abrpipe-demo-plugin", listed.stderr
    assert rows["demo-fast"]["codecs"] == ["h264-fast"] and rows["demo-fast"]["error"] is None
    out = tmp_path / "out"
    encoded = run_cli("encode", str(clip_360p), "-o", str(out), "-p", "demo-fast", "--json", env=env)
    assert encoded.returncode == 0, encoded.stderr
    record = json.loads(encoded.stdout)
    assert [r["codec"][:5] for r in record["renditions"] if r["kind"] == "video"] == ["avc1.", "avc1."]
    assert (out / "master.m3u8").is_file() and record["validation"]["errors"] == 0
