#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (run from anywhere; rewrites them).

Small, valid-ish inputs that take each target past its first checks: layer tars with every
kind of entry (and the attacks the reader refuses), docker and OCI archives whose digests
are right, registry documents, challenges, references and option values.
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(HERE, target, name), "wb") as out:
        out.write(data)


def tar_bytes(entries):
    """entries: (name, kind, payload) with kind file|dir|symlink|hardlink|fifo; no padding."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    data = buffer.getvalue()
    # tarfile pads to 10 KiB records; two zero blocks end the archive, the rest is slack.
    end = len(data.rstrip(b"\0"))
    end = (end + 511) // 512 * 512
    return data[: end + 1024]


def layer_seeds():
    plain = tar_bytes([
        ("etc", "dir", None),
        ("etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\n"),
        ("etc/link", "hardlink", "etc/passwd"),
        ("bin", "symlink", "usr/bin"),
        ("usr/bin/tool", "file", b"#!/bin/sh\n"),
        ("run/fifo", "fifo", None),
    ])
    whiteouts = tar_bytes([
        ("a", "dir", None),
        ("a/.wh..wh..opq", "file", b""),
        ("a/kept", "file", b"x"),
        ("b/.wh.gone", "file", b""),
    ])
    hostile = tar_bytes([
        ("../escape", "file", b"x"),
        ("up", "symlink", "../../.."),
        ("up/escape", "file", b"x"),
        ("abs", "symlink", "/etc"),
        ("abs/passwd", "file", b"x"),
        ("hard", "hardlink", "../../etc/shadow"),
    ])
    # First byte: 0 = as is, 1 = the harness gzips the rest, 2 = it zstd-compresses it;
    # 4 adds the owners.
    write("layer_reader", "plain.tar", b"\x00" + plain)
    write("layer_reader", "plain-owners.tar", b"\x04" + plain)
    write("layer_reader", "whiteouts-gzip-by-harness.tar", b"\x01" + whiteouts)
    write("layer_reader", "hostile-zstd-by-harness.tar", b"\x02" + hostile)
    write("layer_reader", "whiteouts.tar.gz", b"\x00" + gzip.compress(whiteouts, mtime=0))
    write("layer_reader", "plain.tar.zst", b"\x00" + subprocess.run(["zstd", "-q", "-c"], input=plain, stdout=subprocess.PIPE, check=True).stdout)


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_parts():
    layer = tar_bytes([("hello", "file", b"hello\n")])
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "COPY hello /"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                    "size": len(layer)}],
    }, sort_keys=True, separators=(",", ":")).encode()
    return layer, config, manifest


def archive(files):
    return tar_bytes([(name, "file", data) for name, data in files])


def load_seeds():
    layer, config, manifest = image_parts()
    hexdigest = lambda data: hashlib.sha256(data).hexdigest()
    docker = archive([
        ("manifest.json", json.dumps([{"Config": "blobs/sha256/" + hexdigest(config),
                                       "RepoTags": ["app:1"],
                                       "Layers": ["blobs/sha256/" + hexdigest(layer)]}]).encode()),
        ("blobs/sha256/" + hexdigest(config), config),
        ("blobs/sha256/" + hexdigest(layer), layer),
    ])
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
                       "size": len(manifest),
                       "annotations": {"io.containerd.image.name": "docker.io/library/app:1",
                                       "org.opencontainers.image.ref.name": "1"}}],
    }).encode()
    oci = archive([
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", index),
        ("blobs/sha256/" + hexdigest(manifest), manifest),
        ("blobs/sha256/" + hexdigest(config), config),
        ("blobs/sha256/" + hexdigest(layer), layer),
    ])
    write("load_archive", "docker.tar", docker)
    write("load_archive", "oci.tar", oci)
    write("load_archive", "docker.tar.gz", gzip.compress(docker, mtime=0))
    write("load_archive", "digest-tag.tar", docker.replace(b'"app:1"', b'"app@sha256:' + b"0" * 58 + b'"'))


def json_seeds():
    layer, config, manifest = image_parts()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "digest": digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "arm64", "os": "linux", "variant": "v8",
                                    "os.features": ["x"]}}],
        "annotations": {"a": "b"},
    }).encode()
    cache_config = json.dumps({"kiln-remote-cache": 1, "records": [
        {"key": digest(b"k"), "layer": 0, "diff_id": digest(layer), "created": "2024-01-01T00:00:00Z"},
        {"key": digest(b"m"), "layer": 2, "diff_id": digest(layer), "created": "", "cache_mount": "go"}]}).encode()
    healthcheck = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                              "config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000,
                                                         "Retries": 3},
                                         "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
                                         "Labels": {"a": "b"}, "OnBuild": ["RUN x"], "Shell": ["/bin/sh", "-c"]}})
    # First byte: 0 manifest, 1 index, 2 config, 3 cache config, 4 token answer.
    write("registry_json", "manifest.json", b"\x00" + manifest)
    write("registry_json", "index.json", b"\x01" + index)
    write("registry_json", "config.json", b"\x02" + config)
    write("registry_json", "config-healthcheck.json", b"\x02" + healthcheck.encode())
    write("registry_json", "cache-config.json", b"\x03" + cache_config)
    write("registry_json", "token.json", b'\x04{"token":"abc","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}')
    write("registry_json", "access-token.json", b'\x09{"access_token":"abc","expires_in":9999999999}')


def text_seeds():
    for i, text in enumerate([
        "app", "ubuntu:22.04", "localhost:5000/a/b:tag", "user/app", "index.docker.io/library/x",
        "docker.io/a.b/app:1", "[::1]:5000/x:1", "Registry.Example.com/ns/a_b__c--d.e:v1.0-rc_1",
        "host/app@sha256:" + "a" * 64, "host/app:1@sha256:" + "b" * 64, "a" * 64,
    ]):
        write("reference", "ref%02d" % i, text)
    for i, text in enumerate([
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull"',
        'Basic realm="Registry Realm"',
        'Bearer realm="http://10.0.0.1/token",service=svc, Basic realm="x"',
        'Bearer realm="https://a.test/t?x=1",error="invalid_token",scope="repository:a:pull repository:b:push"',
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
    ]):
        write("www_authenticate", "challenge%02d" % i, text)
    for i, text in enumerate([
        "type=image,name=app:1,push=true", "type=registry,name=localhost:5000/a:1", "type=oci,dest=out.tar",
        "type=docker,dest=-", "type=local,dest=out", "out", "-", 'type=image,"name=a:1,b:2"',
        "type=tar,dest=rootfs.tar,compression=zstd", "type=registry,ref=localhost:5000/app:cache,mode=max",
        "type=local,src=cache,dest=cache,mode=min,compression=zstd,cache-mounts=true", "localhost:5000/app:cache",
        "type=inline", "type=gha,url=x",
    ]):
        write("output_spec", "spec%02d" % i, text)


if __name__ == "__main__":
    layer_seeds()
    load_seeds()
    json_seeds()
    text_seeds()
