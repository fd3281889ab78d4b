"""Object storage: encode from and to a real S3-compatible server (SeaweedFS on 127.0.0.1, started
here), publish order watched from outside, interrupted uploads resumed, re-publishing without a
mix, errors as one line with their exit code. URL parsing and manifest rewriting are tested alone."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from media import TINY_PROFILE, make_clip, require_ffmpeg_tools, requires_ffmpeg, small_tmpfs
from s3server import ACCESS_KEY, REQUIRE_ENV, SECRET_KEY, Proxy, client_env, seaweedfs

from abrpipe import storage
from abrpipe.errors import DependencyError, ExitCode, InputError, OutputError

# ---------------------------------------------------------------------------------------------
# Without a server.


@pytest.mark.parametrize(
    "text, reason",
    [
        ("ftp://host/out", "only s3:// object storage is supported"),
        ("http://example.com/out/", "only s3:// object storage is supported"),
        ("gs://bucket/out", "only s3:// object storage is supported"),
        ("s3:/media/t10/", "did you mean s3://media/t10/?"),
        ("s3:media/t10", "did you mean s3://media/t10?"),
        ("s3:", "did you mean s3://?"),
        ("s3:///t10", "names no bucket"),
        ("s3://Bad_Bucket!/x", "is not a valid bucket name"),
    ],
)
def test_unusable_output_urls_are_refused(text, reason):
    with pytest.raises(OutputError) as err:
        storage.parse_output(text)
    assert reason in err.value.message and err.value.message.startswith(text)


@pytest.mark.parametrize("text", ["out", "out/film-1", "/tmp/x", "a:b", "clips/12:30.mp4"])
def test_local_paths_stay_local(text):
    assert storage.parse_output(text) is None


def test_s3_urls_parse():
    assert storage.parse_output("s3://media/films/film-1/") == storage.ObjectURL("media", "films/film-1/")
    assert storage.parse_input("s3://mezz/a/film.mp4") == storage.ObjectURL("mezz", "a/film.mp4")
    assert storage.parse_input("https://example.com/film.mp4") is None  # probe's own rule applies
    with pytest.raises(InputError, match="did you mean s3://mezz/film.mp4"):
        storage.parse_input("s3:/mezz/film.mp4")
    with pytest.raises(InputError, match="names a folder"):
        storage.parse_input("s3://mezz/films/")


def test_entry_points_are_rewritten_into_the_version():
    master = (
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="Main",URI="audio/playlist.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO="a"\n360p/playlist.m3u8\n'
        '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,URI="360p/iframes.m3u8"\n'
        '#EXT-X-SESSION-DATA:DATA-ID="x",URI="https://example.com/x.json"\n'
    )
    out = storage.point_hls(master, "v/abc/")
    assert "\nv/abc/360p/playlist.m3u8\n" in out
    assert 'URI="v/abc/audio/playlist.m3u8"' in out and 'URI="v/abc/360p/iframes.m3u8"' in out
    assert 'URI="https://example.com/x.json"' in out  # absolute: untouched
    mpd = (
        '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:cenc="urn:mpeg:cenc:2013" type="static">'
        '<ProgramInformation/><Period><AdaptationSet><ContentProtection cenc:default_KID="00"/></AdaptationSet></Period></MPD>'
    )
    root = ET.fromstring(storage.point_dash(mpd, "v/abc/"))
    ns = "{urn:mpeg:dash:schema:mpd:2011}"
    assert [c.tag for c in root][:3] == [f"{ns}ProgramInformation", f"{ns}BaseURL", f"{ns}Period"]  # the schema's order
    assert root.find(f"{ns}BaseURL").text == "v/abc/"
    assert root.find(f".//{ns}ContentProtection").get("{urn:mpeg:cenc:2013}default_KID") == "00"


def test_without_boto3_object_storage_is_a_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if `pip install abrpipe` without the s3 extra
    with pytest.raises(DependencyError, match="object storage needs boto3") as err:
        storage.client()
    assert err.value.exit_code == ExitCode.DEPENDENCY and err.value.hint == "pip install 'abrpipe[s3]'"


def test_content_types_of_every_kind_of_object():
    expected = {"master.m3u8": "application/vnd.apple.mpegurl", "manifest.mpd": "application/dash+xml",
                "seg_00001.m4s": "video/iso.segment", "init.mp4": "video/mp4", "subs/seg_1.vtt": "text/vtt",
                "thumbs/tile.JPG": "image/jpeg", "seg_1.ts": "video/mp2t", "abrpipe.json": "application/json",
                "unknown.bin": "application/octet-stream"}
    assert {name: storage.content_type(name) for name in expected} == expected


# ---------------------------------------------------------------------------------------------
# With a real server.


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        c = server.client()
        for bucket in ("mezz", "media"):
            c.create_bucket(Bucket=bucket)
        yield server


@pytest.fixture(scope="session")
def mezz(s3, tmp_path_factory):
    """Two different 4-s sources in s3://mezz/: a.mp4 and b.mp4."""
    require_ffmpeg_tools()
    d = tmp_path_factory.mktemp("mezz")
    make_clip(d / "a.mp4", size="480x270", rate="15", seconds=4)
    make_clip(d / "b.mp4", size="480x270", rate="15", seconds=4, audio="sine=frequency=880:sample_rate=48000",
              extra=("-vf", "negate"))
    c = s3.client()
    for name in ("a.mp4", "b.mp4"):
        c.upload_file(str(d / name), "mezz", name)
    return d


@pytest.fixture()
def proxy(s3):
    host, port = s3.endpoint.rsplit("//", 1)[1].split(":")
    p = Proxy((host, int(port))).start()
    yield p
    p.stop()


@pytest.fixture()
def scratch(tmp_path):
    d = tmp_path / "scratch"
    d.mkdir()
    return d


@pytest.fixture()
def in_process(s3, scratch, monkeypatch):
    """This process's environment pointed at the server (for calls into abrpipe.storage)."""
    for k, v in client_env(s3.endpoint, scratch).items():
        if k.startswith("AWS_") or k == "ABRPIPE_SCRATCH":
            monkeypatch.setenv(k, v)


def cli(env: dict[str, str], *args: str, cwd: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "abrpipe", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess, code: int, text: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("abrpipe: error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert SECRET_KEY not in proc.stderr + proc.stdout  # credentials are never printed
    return errors[0]


def listing(c, bucket: str, prefix: str) -> dict[str, dict]:
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = {"etag": o["ETag"], "size": o["Size"], "modified": o["LastModified"]}
    return out


def references(key: str, text: str) -> set[str]:
    """Every object a manifest names (read here, independently of abrpipe's own parsers)."""
    base = posixpath.dirname(key)
    if key.endswith(".m3u8"):
        uris = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        uris += re.findall(r'URI="([^"]+)"', text)
        return {posixpath.normpath(posixpath.join(base, u)) for u in uris}
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    root = ET.fromstring(text)
    base_url = root.findtext("d:BaseURL", default="", namespaces=ns)
    refs = set()
    for rep in root.iterfind(".//d:Representation", ns):
        tpl = rep.find("d:SegmentTemplate", ns)
        rid = rep.get("id")
        count = sum(1 + int(s.get("r", 0)) for s in tpl.iterfind(".//d:S", ns))
        start = int(tpl.get("startNumber", 1))
        names = [tpl.get("initialization").replace("$RepresentationID$", rid)]
        for n in range(start, start + count):
            media = tpl.get("media").replace("$RepresentationID$", rid)
            names.append(re.sub(r"\$Number%0(\d)d\$", lambda m, n=n: str(n).zfill(int(m.group(1))), media))
        refs |= {posixpath.normpath(posixpath.join(base, base_url, name)) for name in names}
    return refs


class Watcher(threading.Thread):
    """Reads the bucket like a player would, over and over, while a publish runs: every manifest it
    can read must name only objects that exist."""

    def __init__(self, c, bucket: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.c, self.bucket, self.prefix = c, bucket, prefix
        self.stop = threading.Event()
        self.violations: list[str] = []
        self.rounds = 0
        self.entry_versions: list[tuple[str, ...]] = []  # what master.m3u8 named, round by round
        self.mid_publish = 0  # rounds that saw a version under way that the entry point did not name yet

    def run(self) -> None:
        while not self.stop.is_set():
            self.once()

    def once(self) -> None:
        from botocore.exceptions import ClientError

        before = listing(self.c, self.bucket, self.prefix)
        named: set[str] = set()
        read: dict[str, set[str]] = {}
        for key in sorted(k for k in before if k.endswith((".m3u8", ".mpd"))):
            try:
                text = self.c.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
            except ClientError:
                continue  # removed between the listing and the read (a pruned version): not a dangling name
            read[key] = references(key, text)
            if key == self.prefix + "master.m3u8":
                named = {m for r in read[key] for m in re.findall(r"/v/([0-9a-f]{16})/", r)}
                self.entry_versions.append(tuple(sorted(named)))
                if len(named) != 1:
                    self.violations.append(f"{key} names {len(named)} versions: {sorted(named)}")
        after = listing(self.c, self.bucket, self.prefix)  # objects of a live version are never removed
        for key, refs in read.items():
            missing = sorted(r for r in refs if r not in after)
            if missing and key in after:
                self.violations.append(f"{key} names missing {missing[:3]}")
        present = {m for k in before for m in re.findall(r"/v/([0-9a-f]{16})/", k)}
        ever_named = {v for entry in self.entry_versions for v in entry}
        if present - ever_named:  # a version on its way up that no entry point has named yet
            self.mid_publish += 1
        self.rounds += 1
        time.sleep(0.02)


@pytest.mark.slow
@requires_ffmpeg
def test_encode_from_and_to_object_storage_then_republish(s3, mezz, proxy, scratch, tmp_path, in_process):
    c = s3.client()
    env = client_env(proxy.endpoint, scratch)
    proxy.put_delay_s = 0.05  # widen the publish so the watcher reads it half-done
    watcher = Watcher(c, "media", "film/")
    watcher.start()
    try:
        first = cli(env, "encode", "s3://mezz/a.mp4", "-o", "s3://media/film/", "-p", TINY_PROFILE, "--json")
        assert first.returncode == 0, first.stderr
        v1 = json.loads(first.stdout)["published"]["version"]
        check_objects(c, "film/", v1)
        assert json.loads(c.get_object(Bucket="media", Key="film/abrpipe.json")["Body"].read())["input"] == "s3://mezz/a.mp4"
        assert not list((scratch / "abrpipe-inputs").iterdir())  # the downloaded source is removed after success
        # Re-publish a different ladder over it, still watched.
        second = cli(env, "encode", "s3://mezz/b.mp4", "-o", "s3://media/film/", "-p", TINY_PROFILE, "--json")
        assert second.returncode == 0, second.stderr
        v2 = json.loads(second.stdout)["published"]["version"]
    finally:
        watcher.stop.set()
        watcher.join(30)
    assert v1 != v2
    assert watcher.violations == []
    seen = [v for v in dict.fromkeys(watcher.entry_versions) if v]
    assert seen == [(v1,), (v2,)], seen  # the entry point switched once, from the old ladder to the new
    assert watcher.mid_publish > 0 and watcher.rounds > 5  # it did read the bucket while uploads ran
    after = listing(c, "media", "film/")
    assert any(f"/v/{v1}/" in k for k in after)  # the previous ladder stays whole for players still on it
    check_objects(c, "film/", v2)

    # validate reads through the store: clean, then a missing segment is found.
    proc = cli(env, "validate", "s3://media/film/", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["path"] == "s3://media/film/" and report["segments"] > 0 and report["errors"] == 0
    seg = sorted(k for k in after if f"/v/{v2}/" in k and k.endswith(".m4s"))[0]
    c.delete_object(Bucket="media", Key=seg)
    proc = cli(env, "validate", "s3://media/film/", "--json")
    assert proc.returncode == ExitCode.VALIDATION
    assert "FILE-MISSING" in {f["rule"] for f in json.loads(proc.stdout)["findings"]}

    # What was encoded decodes: one rendition downloaded and re-probed.
    local = tmp_path / "copy"
    storage.fetch_tree(storage.ObjectURL("media", f"film/v/{v1}/"), str(local), endpoint=s3.endpoint)
    rendition = next(p for p in local.iterdir() if p.is_dir() and p.name.startswith("270p"))
    joined = tmp_path / "joined.mp4"
    joined.write_bytes((rendition / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in sorted(rendition.glob("seg_*.m4s"))))
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height,nb_read_frames", "-of", "json", str(joined)], capture_output=True, text=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (480, 270, 60)


def check_objects(c, prefix: str, version: str) -> None:
    """Entry points name only `version`; every object carries its Content-Type and Cache-Control."""
    expected_types = {".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml",
                      ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".json": "application/json"}
    keys = [k for k in listing(c, "media", prefix) if k.count("/v/") == 0 or f"/v/{version}/" in k]
    assert {prefix + "master.m3u8", prefix + "manifest.mpd", prefix + "abrpipe.json"} <= set(keys)
    for key in keys:
        head = c.head_object(Bucket="media", Key=key)
        assert head["ContentType"] == expected_types[os.path.splitext(key)[1]], key
        if "/v/" in key:
            assert head["CacheControl"] == "public, max-age=31536000, immutable", key
        elif key.endswith("abrpipe.json"):
            assert head["CacheControl"] == "no-cache"
        else:
            assert head["CacheControl"] == "public, max-age=60", key
    for name in ("master.m3u8", "manifest.mpd"):
        text = c.get_object(Bucket="media", Key=prefix + name)["Body"].read().decode()
        assert set(re.findall(r"v/([0-9a-f]{16})/", text)) == {version}


@pytest.mark.slow
@requires_ffmpeg
def test_killed_upload_resumes_with_only_the_missing_objects(s3, mezz, proxy, scratch):
    c = s3.client()
    env = client_env(proxy.endpoint, scratch)
    argv = [sys.executable, "-m", "abrpipe", "encode", "s3://mezz/a.mp4", "-o", "s3://media/killed/", "-p", TINY_PROFILE, "--json"]

    def run_until(sig: int, when) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sent: list[int] = []

        def on_put(path: str, nth: int) -> bool:
            if "/media/killed/v/" in path and when(path):
                if not sent:  # one signal, as one Ctrl-C
                    sent.append(sig)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, sig)
                return sig == signal.SIGKILL  # a killed process's request never reaches the server
            return False

        proxy.on_put = on_put
        try:
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        proxy.on_put = None
        time.sleep(0.5)  # uploads already on the wire settle
        return proc, err

    # Ctrl-C / SIGTERM at the first upload: exit 143, one line, nothing switched.
    proxy.put_delay_s = 0.1
    proc, err = run_until(signal.SIGTERM, lambda path: True)
    proxy.put_delay_s = 0
    assert proc.returncode == 128 + signal.SIGTERM, err
    errors = [line for line in err.splitlines() if line.startswith("abrpipe: error:")]
    assert errors == ["abrpipe: error: s3://media/killed/: interrupted while uploading; the entry points were not switched"]
    after_term = listing(c, "media", "killed/")
    assert all("/v/" in k for k in after_term)
    # SIGKILL at the first media playlist, which goes up only after every segment and init was
    # uploaded and verified: the segments before it were not uploaded twice.
    proxy.clear()
    proc, _ = run_until(signal.SIGKILL, lambda path: ".m3u8" in path)
    assert proc.returncode == -signal.SIGKILL
    partial = listing(c, "media", "killed/")
    assert partial and all("/v/" in k for k in partial)  # the entry points were never written
    assert {os.path.splitext(k)[1] for k in partial} == {".mp4", ".m4s"}  # segments and inits, nothing else
    stored = {p.split("?")[0].removeprefix("/media/") for p in proxy.puts() if ".m3u8" not in p}
    assert stored == set(partial) - set(after_term)
    proxy.clear()

    rerun = cli(env, "encode", "s3://mezz/a.mp4", "-o", "s3://media/killed/", "-p", TINY_PROFILE, "--json")
    assert rerun.returncode == 0, rerun.stderr
    published = json.loads(rerun.stdout)["published"]
    final = listing(c, "media", "killed/")
    version_keys = {k for k in final if "/v/" in k}
    assert set(partial) <= version_keys  # the same content: the same version, resumed
    uploaded = {p.split("?")[0].removeprefix("/media/") for p in proxy.puts()}
    assert uploaded == (version_keys - set(partial)) | {"killed/master.m3u8", "killed/manifest.mpd", "killed/abrpipe.json"}
    for key, meta in partial.items():  # what was there was not rewritten
        assert final[key]["modified"] == meta["modified"] and final[key]["etag"] == meta["etag"]
    assert published["skipped"] == len(partial) and published["uploaded"] == len(uploaded)
    assert not any(p.startswith("/mezz/") for _, p in proxy.requests if _ == "GET")  # the source came from scratch
    proc2 = cli(client_env(s3.endpoint, scratch), "validate", "s3://media/killed/")
    assert proc2.returncode == 0, proc2.stderr


def test_publish_multipart_verify_and_prune(s3, tmp_path, in_process):
    """Large objects go up in parts (ETag checked the multipart way), downloads are verified the same
    way, identical objects are skipped, and only the current and the previous versions are kept."""
    url = storage.ObjectURL("media", "synthetic/")
    target = storage.ObjectTarget(url, endpoint=s3.endpoint)
    versions = []
    big = os.urandom(11 << 20)
    for i in range(3):
        work = tmp_path / f"work{i}"
        (work / "r").mkdir(parents=True)
        (work / "r" / "init.mp4").write_bytes(big)
        (work / "r" / "seg_00001.m4s").write_bytes(f"segment {i}".encode())
        (work / "r" / "playlist.m3u8").write_text("#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\nseg_00001.m4s\n#EXT-X-ENDLIST\n")
        (work / "master.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nr/playlist.m3u8\n")
        stats = target.publish(str(work))
        versions.append(stats["version"])
        if i == 0:
            assert stats["uploaded"] == 5 and stats["skipped"] == 0
    c = s3.client()
    keys = listing(c, "media", "synthetic/")
    assert {m for k in keys for m in re.findall(r"/v/([0-9a-f]{16})/", k)} == set(versions[1:])  # the oldest pruned
    head = c.head_object(Bucket="media", Key=f"synthetic/v/{versions[2]}/r/init.mp4")
    assert head["ETag"].strip('"').endswith("-2") and head["ContentLength"] == len(big)
    # The same content again: nothing but the unchanged entry point is even considered for upload.
    again = target.publish(str(tmp_path / "work2"))
    assert again["version"] == versions[2] and again["uploaded"] == 0
    # Download with multipart ETag verification.
    got = storage.fetch_input(storage.ObjectURL("media", f"synthetic/v/{versions[2]}/r/init.mp4"), endpoint=s3.endpoint)
    assert Path(got).read_bytes() == big


@pytest.mark.slow
@requires_ffmpeg
def test_batch_reads_and_writes_object_storage(s3, mezz, scratch, tmp_path):
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        f'schema = 1\n[defaults]\nprofile = "{TINY_PROFILE}"\noutput_dir = "s3://media/batch/"\n'
        '[[jobs]]\ninput = "s3://mezz/b.mp4"\nname = "b"\n',
        encoding="utf-8",
    )
    env = client_env(s3.endpoint, scratch)
    proc = cli(env, "batch", str(jobs), "--json")
    assert proc.returncode == 0, proc.stderr
    assert not Path(tmp_path, "s3:").exists() and not Path("s3:").exists()
    proc = cli(env, "validate", "s3://media/batch/b/", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["renditions"] == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('[[jobs]]\ninput = "s3://mezz/b.mp4"\noutput = "ftp://host/b/"\n', encoding="utf-8")
    proc = cli(env, "batch", str(bad))
    assert proc.returncode == ExitCode.PROFILE and "jobs[0].output: ftp://host/b/: is a ftp:// URL" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "output, text",
    [
        ("ftp://host/out/", "is a ftp:// URL: only s3:// object storage is supported"),
        ("https://cdn.example.com/out/", "is a https:// URL"),
        ("s3:/media/t10/", "is not a valid URL (did you mean s3://media/t10/?)"),
        ("s3:", "is not a valid URL"),
    ],
)
def test_cli_refuses_url_outputs_it_cannot_write(output, text, tmp_path, scratch):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"\0" * 100)  # never read: the output is refused first
    proc = cli(client_env("http://127.0.0.1:9", scratch), "encode", str(src), "-o", output, cwd=str(tmp_path))
    one_error_line(proc, ExitCode.OUTPUT, f"{output}: {text}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "scratch"]  # no folder named s3: or ftp:


@requires_ffmpeg
def test_object_storage_errors_are_one_line(s3, mezz, scratch, tmp_path):
    good = client_env(s3.endpoint, scratch)
    wrong = client_env(s3.endpoint, scratch, secret="wrong-" + SECRET_KEY)
    none = {k: v for k, v in good.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    src = str(mezz / "a.mp4")
    line = one_error_line(cli(wrong, "encode", src, "-o", "s3://media/denied/", "-p", TINY_PROFILE), ExitCode.OUTPUT,
                          "s3://media/denied/: access denied by the object store at " + s3.endpoint)
    assert "SignatureDoesNotMatch" in line or "InvalidAccessKeyId" in line or "AccessDenied" in line
    one_error_line(cli(none, "encode", src, "-o", "s3://media/denied/", "-p", TINY_PROFILE), ExitCode.OUTPUT,
                   "s3://media/denied/: no credentials for object storage")
    one_error_line(cli(good, "encode", src, "-o", "s3://nobucket/x/", "-p", TINY_PROFILE), ExitCode.OUTPUT,
                   "s3://nobucket/x/: no such bucket 'nobucket'")
    assert listing(s3.client(), "media", "denied/") == {}
    one_error_line(cli(good, "encode", "s3://mezz/missing.mp4", "-o", str(tmp_path / "o"), "-p", TINY_PROFILE),
                   ExitCode.INPUT, "s3://mezz/missing.mp4: no such object")
    one_error_line(cli(wrong, "encode", "s3://mezz/a.mp4", "-o", str(tmp_path / "o"), "-p", TINY_PROFILE),
                   ExitCode.INPUT, "s3://mezz/a.mp4: access denied")
    one_error_line(cli(good, "encode", "s3:/mezz/a.mp4", "-o", str(tmp_path / "o"), "-p", TINY_PROFILE),
                   ExitCode.INPUT, "s3:/mezz/a.mp4: is not a valid URL (did you mean s3://mezz/a.mp4?)")
    one_error_line(cli(good, "validate", "s3://nobucket/x/"), ExitCode.INPUT, "no such bucket 'nobucket'")
    assert not (tmp_path / "o").exists()


@pytest.fixture()
def tiny_scratch(tmp_path):
    """A 256 KiB tmpfs as scratch space (root only, as CI runs: there, a failure if it cannot be had)."""
    with small_tmpfs(tmp_path / "small", required=os.environ.get(REQUIRE_ENV) == "1") as mnt:
        yield mnt


def test_full_scratch_disk_is_one_line(s3, tiny_scratch, tmp_path):
    s3.client().put_object(Bucket="mezz", Key="big.mp4", Body=os.urandom(600 << 10))
    env = client_env(s3.endpoint, tiny_scratch)
    proc = cli(env, "encode", "s3://mezz/big.mp4", "-o", str(tmp_path / "o"), "-p", TINY_PROFILE)
    one_error_line(proc, ExitCode.OUTPUT, "s3://mezz/big.mp4: no space left on device in scratch space")
    leftovers = [p for p in tiny_scratch.rglob("*") if p.is_file()]
    assert leftovers == [] and not (tmp_path / "o").exists()
    assert ACCESS_KEY not in proc.stderr


def test_dropped_connections_are_retried_and_every_object_verified(s3, proxy, tmp_path, in_process):
    """The first PUT of every object dies on the wire: each one is retried, and the publish ends with
    every object stored and verified."""
    dropped: set[str] = set()

    def drop_first_try(path: str, nth: int) -> bool:
        key = path.split("?")[0]
        if key in dropped:
            return False
        dropped.add(key)
        return True

    proxy.on_put = drop_first_try
    work = tmp_path / "work"
    (work / "r").mkdir(parents=True)
    for i in range(1, 6):
        (work / "r" / f"seg_{i:05d}.m4s").write_bytes(os.urandom(20000))
    (work / "r" / "playlist.m3u8").write_text("#EXTM3U\n" + "".join(f"#EXTINF:2,\nseg_{i:05d}.m4s\n" for i in range(1, 6)))
    (work / "master.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nr/playlist.m3u8\n")
    stats = storage.ObjectTarget(storage.ObjectURL("media", "flaky/"), endpoint=proxy.endpoint).publish(str(work))
    assert stats["uploaded"] == 8 and len(dropped) == 8  # 5 segments, 1 playlist, the version's master, the entry point
    c = s3.client()
    for i in range(1, 6):
        body = c.get_object(Bucket="media", Key=f"flaky/v/{stats['version']}/r/seg_{i:05d}.m4s")["Body"].read()
        assert body == (work / "r" / f"seg_{i:05d}.m4s").read_bytes()


@requires_ffmpeg
def test_dry_run_with_a_profile_and_endpoint_option_writes_nothing(s3, mezz, scratch):
    """Credentials from a shared credentials file chosen by AWS_PROFILE, the endpoint from --endpoint."""
    env = {k: v for k, v in client_env(s3.endpoint, scratch).items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    (scratch / "no-aws-credentials").write_text(
        f"[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
        f"[media]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n", encoding="utf-8")
    env["AWS_PROFILE"] = "media"
    proc = cli(env, "encode", "s3://mezz/a.mp4", "-o", "s3://media/dry/", "-p", TINY_PROFILE, "--dry-run",
               "--endpoint", s3.endpoint)
    assert proc.returncode == 0, proc.stderr
    assert "ffmpeg " in proc.stdout and "s3://" not in proc.stdout  # ffmpeg reads the local copy
    assert str(scratch / "abrpipe-inputs") in proc.stdout and str(scratch / "abrpipe-work") in proc.stdout
    assert SECRET_KEY not in proc.stdout + proc.stderr
    assert listing(s3.client(), "media", "dry/") == {}
