"""What a Dockerfile build reads: context sources, other images, URLs, and the args that matter.

This is the one model of a Dockerfile used for keys, for rendering and for the
args passed to the build.  It follows Docker's scoping: ARGs before the first
FROM are global (FROM lines only, unless redeclared), a stage's ARG takes its
build arg or default, ENV overrides ARG, and a stage starts from its base's
environment (the parent image's ``Config.Env`` or an earlier stage's).  What
it cannot key, it refuses with the line: the build must never read an input
the key does not cover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.dockerfile.parser import Dockerfile, Instruction, ParseError, parse, words
from pipeline.dockerfile.shell import ExpandError, expand

EMPTY_FROM = "resolves to an empty image name"
_URL_PREFIXES = ("http://", "https://")
_GIT_PREFIXES = ("git://", "git@", "ssh://", "github.com/", "gitlab.com/", "bitbucket.org/")


class ModelError(ValueError):
    """The model refuses the Dockerfile; ``line`` is 1-based in the analysed text."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Source:
    """One context path a COPY/ADD or a bind mount reads (unexpanded wildcards kept)."""

    path: str
    line: int
    excludes: tuple[str, ...] = ()
    dynamic: bool = False  # the path came from a variable (it may need the parent image's ENV)


@dataclass(frozen=True)
class BaseImage:
    """What an image reference resolves to, as the model needs it."""

    id: str
    env: tuple[str, ...] = ()  # Config.Env, "NAME=value"
    onbuild: tuple[str, ...] = ()  # Config.OnBuild triggers


ImageLookup = Callable[[str, int], BaseImage]  # (reference, line) -> the local image


@dataclass
class Analysis:
    sources: list[Source] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # reference -> image ID (FROM x AS y, COPY --from=IMG)
    urls: list[str] = field(default_factory=list)  # "URL checksum"
    declared: dict[str, list[str | None]] = field(default_factory=dict)  # ARG name -> each declaration's default
    final_base: str = ""  # what the final stage's FROM chain resolves to (an image reference or ID)
    final_line: int = 0
    instructions: tuple[Instruction, ...] = ()


@dataclass
class _Stage:
    name: str
    base: str  # the resolved image reference, "scratch", or an earlier stage's name
    env: dict[str, str]
    args: dict[str, str | None]
    line: int


def analyse(
    text: str,
    *,
    buildargs: Mapping[str, str],
    images: ImageLookup,
    buildkit: bool,
) -> Analysis:
    """Model one build of ``text`` with ``buildargs``.

    ``images`` resolves any image the build starts from or copies from (the
    parent included, passed by ID) to its ID, environment and ONBUILD triggers.

    Raises:
        ModelError: a construct the key cannot cover, or one this builder cannot run.
    """
    try:
        dockerfile = parse(text)
    except ParseError as exc:
        raise ModelError(exc.line, str(exc)) from None
    model = _Model(dockerfile, buildargs, images, buildkit)
    model.run()
    return model.result


class _Model:
    def __init__(self, dockerfile: Dockerfile, buildargs: Mapping[str, str], images: ImageLookup, buildkit: bool):
        self.df = dockerfile
        self.buildargs = buildargs
        self.lookup_image = images
        self.buildkit = buildkit
        self.meta: dict[str, str | None] = {}
        self.stages: list[_Stage] = []
        self.result = Analysis(instructions=dockerfile.instructions)

    # -- scoping ------------------------------------------------------------------------

    def _expand(self, word: str, line: int, *, meta_only: bool = False) -> str:
        stage = self.stages[-1] if self.stages and not meta_only else None

        def lookup(name: str) -> str | None:
            if stage is None:
                return self.meta.get(name)
            if name in stage.env:
                return stage.env[name]
            return stage.args.get(name)

        try:
            return expand(word, lookup, self.df.escape)
        except ExpandError as exc:
            raise ModelError(line, f"cannot expand {word!r}: {exc}") from None

    def _arg_value(self, name: str, default: str | None, line: int, *, meta: bool) -> str | None:
        if name in self.buildargs:
            return self.buildargs[name]
        if default is not None:
            return self._expand(default, line, meta_only=meta)
        if not meta and name in self.meta:
            return self.meta[name]
        return None

    # -- instructions -------------------------------------------------------------------

    def run(self) -> None:
        if not any(i.keyword == "FROM" for i in self.df.instructions):
            raise ModelError(1, "no FROM instruction")
        for instr in self.df.instructions:
            handler = getattr(self, f"_do_{instr.keyword.lower()}", None)
            if instr.keyword != "FROM" and instr.keyword not in ("ARG",) and not self.stages:
                raise ModelError(instr.line, f"{instr.keyword} before the first FROM")
            if instr.heredocs and not self.buildkit:
                raise ModelError(instr.line, "heredocs (<<EOF) need BuildKit: set builder.buildkit: true")
            if handler:
                handler(instr)
        final = self.stages[-1]
        base, line = final.base, final.line
        seen = {s.name.lower(): s for s in self.stages if s.name}
        while base.lower() in seen and seen[base.lower()] is not final:
            final = seen[base.lower()]
            base, line = final.base, final.line
        self.result.final_base, self.result.final_line = base, line

    def _do_arg(self, instr: Instruction) -> None:
        for word in words(instr.rest, self.df.escape):
            name, eq, default = word.partition("=")
            if not name:
                raise ModelError(instr.line, f"ARG needs a name: {instr.rest!r}")
            value = self._arg_value(name, default if eq else None, instr.line, meta=not self.stages)
            self.result.declared.setdefault(name, []).append(default if eq else None)
            if self.stages:
                self.stages[-1].args[name] = value
            else:
                self.meta[name] = value

    def _do_env(self, instr: Instruction) -> None:
        stage = self.stages[-1]
        found = words(instr.rest, self.df.escape)
        if found and "=" not in found[0]:  # legacy "ENV NAME value with spaces"
            name, _, value = instr.rest.strip().partition(" ")
            stage.env[name] = self._expand(value.strip(), instr.line)
            return
        for word in found:
            name, eq, value = word.partition("=")
            if not eq:
                raise ModelError(instr.line, f"ENV {word!r} has no '='")
            stage.env[name] = self._expand(value, instr.line)

    def _do_from(self, instr: Instruction) -> None:
        parts = words(instr.rest, self.df.escape)
        if not parts:
            raise ModelError(instr.line, "FROM needs an image")
        ref = self._expand(parts[0], instr.line, meta_only=True)
        name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else ""
        earlier = {s.name.lower(): s for s in self.stages if s.name}
        if ref.lower() in earlier:
            base = earlier[ref.lower()]
            stage = _Stage(name, ref, dict(base.env), {}, instr.line)
            self.stages.append(stage)
            return
        env: dict[str, str] = {}
        onbuild: tuple[str, ...] = ()
        if ref != "scratch":
            if not ref:
                raise ModelError(instr.line, f"FROM {parts[0]} {EMPTY_FROM}; declare its ARG before the first FROM "
                                             "and set it")
            image = self.lookup_image(ref, instr.line)
            self.result.images[ref] = image.id
            env = dict(e.partition("=")[::2] for e in image.env)
            onbuild = image.onbuild
        self.stages.append(_Stage(name, ref, env, {}, instr.line))
        for trigger in onbuild:
            self._onbuild(trigger, instr.line)

    def _onbuild(self, trigger: str, line: int) -> None:
        # The base image's ONBUILD triggers run as if written right after this FROM.
        for instr in parse(trigger).instructions:
            moved = Instruction(instr.keyword, instr.flags, instr.rest, instr.json_args, instr.heredocs, line, line)
            handler = getattr(self, f"_do_{moved.keyword.lower()}", None)
            if handler and moved.keyword != "FROM":
                handler(moved)

    def _raw_copy_args(self, instr: Instruction) -> list[str]:
        return list(instr.json_args) if instr.json_args is not None else instr.rest.split()

    def _copy_args(self, instr: Instruction) -> list[str]:
        heredoc_names = {f"<<{h.name}" for h in instr.heredocs}
        raw = self._raw_copy_args(instr)
        out = []
        for word in raw:
            bare = word.lstrip("0123456789").replace("<<-", "<<").replace("'", "").replace('"', "")
            if bare in heredoc_names:
                out.append("<<heredoc>>")
            else:
                out.append(self._expand(word, instr.line))
        return out

    def _do_copy(self, instr: Instruction) -> None:
        self._copy_or_add(instr, add=False)

    def _do_add(self, instr: Instruction) -> None:
        self._copy_or_add(instr, add=True)

    def _copy_or_add(self, instr: Instruction, *, add: bool) -> None:
        args = self._copy_args(instr)
        if len(args) < 2:
            raise ModelError(instr.line, f"{instr.keyword} needs a source and a destination")
        sources = args[:-1]
        from_ = [self._expand(v, instr.line) for v in instr.flag("from")]
        if from_:
            self._from_reference(from_[-1], instr.line)
            return
        excludes = tuple(self._expand(v, instr.line) for v in instr.flag("exclude"))
        checksum = [self._expand(v, instr.line) for v in instr.flag("checksum")]
        raw_sources = self._raw_copy_args(instr)[:-1]
        for src, raw in zip(sources, raw_sources, strict=True):
            if src == "<<heredoc>>":
                continue
            low = src.lower()
            if low.startswith(_GIT_PREFIXES) or (low.startswith(_URL_PREFIXES) and low.split("#")[0].endswith(".git")):
                raise ModelError(instr.line, f"{instr.keyword} of a git repository ({src}) cannot be keyed: "
                                             "check it out into the context (e.g. a git submodule) and COPY it")
            if low.startswith(_URL_PREFIXES):
                if not add:
                    raise ModelError(instr.line, f"COPY cannot fetch a URL ({src}); use ADD --checksum=sha256:… or RUN curl")
                if not checksum:
                    raise ModelError(instr.line, f"ADD {src} without --checksum cannot be keyed (the URL's content can "
                                                 "change); add --checksum=sha256:<digest> (needs builder.buildkit: true)")
                if not self.buildkit:
                    raise ModelError(instr.line, "ADD --checksum needs BuildKit: set builder.buildkit: true")
                self.result.urls.append(f"{src} {checksum[-1]}")
                continue
            self.result.sources.append(Source(src, instr.line, excludes, dynamic="$" in raw))

    def _from_reference(self, ref: str, line: int) -> None:
        names = {s.name.lower() for s in self.stages if s.name}
        if ref.lower() in names or (ref.isdigit() and int(ref) < len(self.stages)):
            return
        if ref == "scratch":
            return
        self.result.images[ref] = self.lookup_image(ref, line).id

    def _do_run(self, instr: Instruction) -> None:
        mounts = instr.flag("mount")
        if mounts and not self.buildkit:
            raise ModelError(instr.line, "RUN --mount needs BuildKit: set builder.buildkit: true")
        for raw in mounts:
            fields = {}
            for item in self._expand(raw, instr.line).split(","):
                key, eq, value = item.partition("=")
                fields[key.strip().lower()] = value if eq else "true"
            kind = fields.get("type", "bind")
            if kind not in ("bind", "cache"):
                continue
            source_from = fields.get("from")
            if source_from:
                self._from_reference(source_from, instr.line)
                continue
            if kind == "bind":
                path = fields.get("source", fields.get("src", ".")) or "."
                self.result.sources.append(Source(path, instr.line, dynamic="$" in raw))
