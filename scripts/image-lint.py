#!/usr/bin/env python3
"""Checks of streamer/Dockerfile that hadolint cannot make (`make image-lint` runs both).

hadolint does not see through `FROM ${ARG}` and knows nothing of the workspace, so:
- every base image, with the ARG defaults substituted, has an explicit tag (not `latest`);
- no ADD; each RUN with `apt-get update` removes /var/lib/apt/lists in the same layer and
  installs with --no-install-recommends; no ffmpeg (the streamer does not need it);
- the delivered stages (the last one and `prebuilt`) run as a numeric non-root USER, have an
  exec-form HEALTHCHECK and ENTRYPOINT on the binary they copy;
- the binary is the workspace's: the build stage runs `cargo build --release --locked -p P
  --bin B` where P is a workspace member with the [[bin]] B (`cargo metadata`), with no flag
  that leaves the workspace's release profile or its features (--profile, --features, ...),
  installs target/release/B to the path the last stage copies from, and COPYs every member,
  the manifest, the lock file and the [patch] paths it needs.
Usage: scripts/image-lint.py [Dockerfile]   (default streamer/Dockerfile)
"""

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_PATH = "/usr/local/bin/streamer"


def instructions(text):
    """(line, INSTRUCTION, rest) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "streamer/Dockerfile"
    errors = []
    err = lambda line, msg: errors.append(f"{path.name}:{line}: {msg}")
    args, stages = {}, []  # stage: dict(name, base, line, ins=[...])
    for line, word, rest in instructions(path.read_text()):
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), parts[0])
            stages.append({"name": name, "base": base, "line": line, "ins": []})
        elif stages:
            stages[-1]["ins"].append((line, word, rest))
        else:
            err(line, f"{word} before the first FROM")
    names = {s["name"]: s for s in stages if s["name"]}

    # Base images: pinned tags.
    for s in stages:
        base = s["base"]
        if base in names or base == "scratch":
            continue
        if "$" in base:
            err(s["line"], f"FROM {base}: an ARG without a default")
        elif "@sha256:" not in base and ":" not in base.rsplit("/", 1)[-1]:
            err(s["line"], f"FROM {base}: no tag")
        elif base.endswith(":latest"):
            err(s["line"], f"FROM {base}: latest is not a pin")

    # Layers.
    for s in stages:
        for line, word, rest in s["ins"]:
            if word == "ADD":
                err(line, "ADD: use COPY (and no URLs)")
            if word == "RUN" and "apt-get" in rest:
                if "apt-get update" in rest and "rm -rf /var/lib/apt/lists" not in rest:
                    err(line, "apt-get update without rm -rf /var/lib/apt/lists/* in the same RUN")
                if "apt-get install" in rest and "--no-install-recommends" not in rest:
                    err(line, "apt-get install without --no-install-recommends")
                if re.search(r"\bffmpeg\b", rest):
                    err(line, "ffmpeg installed: the streamer does not need it at run time")

    def chain(stage):
        """The stage and the stages it is built FROM, nearest first."""
        out = [stage]
        while out[-1]["base"] in names:
            out.append(names[out[-1]["base"]])
        return out

    def last(stage, word):
        for s in chain(stage):
            for line, w, rest in reversed(s["ins"]):
                if w == word:
                    return line, rest
        return None, None

    def exec_form(rest):
        try:
            v = json.loads(rest)
        except ValueError:
            return None
        return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None

    final = stages[-1]
    delivered = [final] + ([names["prebuilt"]] if "prebuilt" in names else [])
    for s in delivered:
        label = s["name"] or "the last stage"
        line, user = last(s, "USER")
        uid = (user or "").split(":")[0]
        if not uid.isdigit() or uid == "0":
            err(line or s["line"], f"{label}: USER {user!r}, want a numeric non-root uid")
        line, hc = last(s, "HEALTHCHECK")
        cmd = exec_form(hc.split(" CMD ", 1)[1]) if hc and " CMD " in f" {hc}" else None
        if hc is None:
            err(s["line"], f"{label}: no HEALTHCHECK")
        elif not cmd or cmd[0] != BIN_PATH:
            err(line, f"{label}: HEALTHCHECK not exec form on {BIN_PATH} (no shell in the image)")
        line, ep = last(s, "ENTRYPOINT")
        if exec_form(ep or "") != [BIN_PATH]:
            err(line or s["line"], f"{label}: ENTRYPOINT {ep!r}, want [\"{BIN_PATH}\"]")
        copies = [r for _, w, r in s["ins"] if w == "COPY" and r.split()[-1] == BIN_PATH]
        if len(copies) != 1:
            err(s["line"], f"{label}: {len(copies)} COPY to {BIN_PATH}, want 1")

    # The binary: the workspace's package, bin and release profile.
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    members = {p["name"]: p for p in meta["packages"] if p["id"] in meta["workspace_members"]}
    builds = [(s, line, rest) for s in stages for line, w, rest in s["ins"]
              if w == "RUN" and rest.startswith("cargo build")]
    if len(builds) != 1:
        err(0, f"{len(builds)} RUN cargo build, want 1")
    for s, line, rest in builds:
        cmd, _, after = rest.partition("&&")
        argv = shlex.split(cmd)[2:]
        flags = {a for a in argv if a.startswith("-")}
        for want in ("--release", "--locked"):
            if want not in flags:
                err(line, f"cargo build without {want}")
        for bad in ("--profile", "--features", "-F", "--all-features", "--no-default-features",
                    "--target", "--config", "--frozen", "--offline", "-Z"):
            if any(a == bad or a.startswith(bad + "=") for a in argv):
                err(line, f"cargo build {bad}: not the workspace's release build")
        value = lambda *opts: [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in opts]
        pkgs, bins = value("-p", "--package"), value("--bin")
        if len(pkgs) != 1 or pkgs[0] not in members:
            err(line, f"cargo build -p {pkgs}: want one workspace member ({', '.join(sorted(members))})")
            continue
        pkg = members[pkgs[0]]
        pkg_bins = [t["name"] for t in pkg["targets"] if "bin" in t["kind"]]
        if len(bins) != 1 or bins[0] not in pkg_bins:
            err(line, f"cargo build --bin {bins}: want one of {pkg['name']}'s [[bin]] {pkg_bins}")
            continue
        m = re.search(r"install\s+(?:-\S+\s+)*target/release/(\S+)\s+(\S+)", after)
        if not m or m[1] != bins[0]:
            err(line, f"the build does not install target/release/{bins[0]}")
            continue
        out = m[2]
        src = f"--from={s['name']} {out} {BIN_PATH}"
        if not any(w == "COPY" and " ".join(r.split()) == src for _, w, r in final["ins"]):
            err(final["line"], f"the last stage does not COPY {src}")
        # The build context it copies: the whole workspace.
        copied = set()
        for _, w, r in s["ins"]:
            if w == "COPY" and not r.startswith("--from"):
                copied.update(p.rstrip("/") for p in r.split()[:-1])
        manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
        needed = {"Cargo.toml", "Cargo.lock"}
        needed |= {m.split("/")[0] for m in manifest["workspace"]["members"]}
        for patches in manifest.get("patch", {}).values():
            needed |= {v["path"].split("/")[0] for v in patches.values() if "path" in v}
        if "." not in copied:
            for p in sorted(needed - copied):
                err(line, f"the build stage does not COPY {p}")
        src_path = next(t["src_path"] for t in pkg["targets"] if t["name"] == bins[0] and "bin" in t["kind"])
        print(f"binary: package {pkg['name']}, [[bin]] {bins[0]} ({Path(src_path).relative_to(ROOT)}),"
              f" cargo build {' '.join(argv)} -> {out} -> {BIN_PATH}")

    for e in errors:
        print(e, file=sys.stderr)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
          f"{len(stages)} stages, {len(errors)} problem(s)")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
