"""Mixture sources: every way a config names a mixture, one class each, resolved by one function.

``select.mixture``, ``search.prior``, ``experiment.mixtures`` and ``quadmix predict-mixture
--mixture`` all take a source name, and :func:`resolve` turns each into a :class:`Mixture`:

- ``natural``: the pool's own token shares (the stats table);
- ``uniform``: equal shares;
- ``entropy:<measure>``: the entropy job's mixture of that measure (se, je, ce, vne), in
  ``entropy.output_dir``;
- ``bimix``: BiMix's r* (``bimix.output_mixture``, written by ``quadmix bimix``);
- ``regmix``: RegMix's r* (``search.output_mixture``, written by ``quadmix fit-search`` in
  regmix mode);
- ``tandem``, ``doremi``: the reweight job's mixtures, in ``reweight.output_dir`` (the averaged or
  the last α, ``reweight.final``);
- anything else: a mixture file, by path or URI.

Why here and why a context: mixtures are this folder's kind, and this folder must run without
Spark and without reading URIs itself. So a source resolves against a :class:`SourceContext` the
job builds (``pipeline.inputs.mixture_context``): the config (the paths other jobs write their
mixtures to), the key the name came from (for messages), the domains the mixture must name, the
files layer (read a mixture file, test for a file, join a path) and the pool's token counts,
read from the stats table only when a source asks for them.

Adding a source: subclass :class:`MixtureSource` (``name``, ``pattern``, ``argument`` when the
name takes one after ``:``, and ``mixture(ctx)``), or :class:`JobOutput` for a mixture another job
writes (``output_key``, ``job``), and decorate it with :func:`register` (it files the class under
its ``name`` in :data:`SOURCES`, a :class:`~quadmix_spark.core.registry.Registry`). Nothing else
names it; docs/extending.md walks through one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.core import Mixture, MixtureError
from quadmix_spark.core.registry import Registry
from quadmix_spark.mixing.entropy import MEASURES


@dataclass(frozen=True)
class SourceContext:
    """What a source may read, built by the job that names the mixture.

    ``read_mixture(path, key)`` reads a mixture file (errors name ``key``); ``is_file(path)`` and
    ``join(base, *parts)`` are the files layer's; ``domains`` (None: the mixture's own) are the
    domains the mixture must name exactly; ``tokens()`` gives the pool's tokens per domain (None
    where no stats table can be read) and ``tokens_provenance`` says where they come from.
    """

    config: PipelineConfig
    key: str
    read_mixture: Callable[[str, str], Mixture]
    is_file: Callable[[str], bool]
    join: Callable[..., str]
    domains: tuple[str, ...] | None = None
    tokens: Callable[[], Mapping[str, float]] | None = None
    tokens_provenance: Mapping[str, Any] = field(default_factory=dict)

    def pool_tokens(self, source: str) -> dict[str, float]:
        """The pool's tokens of each of ``domains`` (every domain of the stats when None)."""
        if self.tokens is None:
            raise ConfigError(f"{self.key}: {source} needs the pool's token counts (the stats table: Spark)")
        tokens = self.tokens()
        domains = self.domains if self.domains is not None else sorted(tokens)
        missing = [d for d in domains if d not in tokens]
        if missing:
            where = ", ".join(f"{k} {v}" for k, v in self.tokens_provenance.items())
            raise ConfigError(f"{self.key}: {source}, but the stats ({where}) lack domains {missing}")
        return {d: tokens[d] for d in domains}

    def require_domains(self, source: str) -> tuple[str, ...]:
        if self.domains is None:
            raise ConfigError(f"{self.key}: {source} needs the domains to share among")
        return self.domains


class MixtureSource:
    """A named way to get a mixture; ``arg`` is the part of the name after ``:``."""

    name: ClassVar[str]  # the registry key: what precedes ``:``
    pattern: ClassVar[str]  # how the config spells it, for messages (``entropy:<measure>``)
    argument: ClassVar[str | None] = None  # what the part after ``:`` names (None: no argument)
    needs_tokens: ClassVar[bool] = False  # True: reads the pool's token counts (the stats table)

    def __init__(self, arg: str | None = None):
        self.arg = arg

    @property
    def spelled(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @property
    def label(self) -> str:
        """The source's row label (the experiment's comparison)."""
        return self.spelled

    def check(self, key: str) -> None:
        """Fail with a ConfigError naming ``key`` unless the argument is valid (no I/O)."""

    def file(self, ctx: SourceContext) -> str | None:
        """The file the mixture is read from (None: computed)."""
        return None

    def require(self, ctx: SourceContext) -> None:
        """Fail with a ConfigError naming the key unless what the source reads is there."""

    def mixture(self, ctx: SourceContext) -> Mixture:
        raise NotImplementedError


#: name (what precedes ``:``) → source class, in registration order; :func:`register` adds one.
SOURCES = Registry("mixture source")

S = TypeVar("S", bound=type[MixtureSource])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return SOURCES.register(cls.name, cls)


def known() -> str:
    """The registered sources as the config spells them (``natural, uniform, entropy:<measure>, …``)."""
    return ", ".join(SOURCES.get(name).pattern for name in SOURCES)


def parse(name: str, key: str) -> MixtureSource:
    """The source a name stands for: a registered one, else a mixture file. Checks the argument."""
    head, sep, arg = name.partition(":")
    if head not in SOURCES:
        return MixtureFile(name)
    cls = SOURCES.get(head)
    if bool(sep) != (cls.argument is not None) or (sep and not arg):
        raise ConfigError(f"{key}: {name!r} is not {cls.pattern}")
    source = cls(arg if sep else None)
    source.check(key)
    return source


def check(name: str, ctx: SourceContext) -> MixtureSource:
    """The source of ``name``, its inputs checked (a file there), without reading them."""
    source = parse(name, ctx.key)
    source.require(ctx)
    return source


def resolve(name: str, ctx: SourceContext) -> Mixture:
    """The mixture ``name`` stands for, over exactly ``ctx.domains`` when they are given."""
    source = check(name, ctx)
    mixture = source.mixture(ctx)
    if ctx.domains is not None:
        try:
            mixture.as_vector(ctx.domains)
        except MixtureError as err:
            raise ConfigError(f"{ctx.key} ({name}): {err}") from err
    return mixture


class MixtureFile(MixtureSource):
    """A mixture file by path or URI: what a name is when no source has it (not registered)."""

    name = pattern = "a mixture file"

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    @property
    def spelled(self) -> str:
        return self.path

    @property
    def label(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]

    def file(self, ctx: SourceContext) -> str:
        return self.path

    def require(self, ctx: SourceContext) -> None:
        if not ctx.is_file(self.path):
            raise ConfigError(f"{ctx.key}: neither {known()} nor a mixture file: {self.path}")

    def mixture(self, ctx: SourceContext) -> Mixture:
        return ctx.read_mixture(self.path, ctx.key)


class JobOutput(MixtureSource):
    """The mixture file another job writes at the path ``output_key`` names."""

    output_key: ClassVar[str]  # the dotted config key of the output (a file, or a folder)
    job: ClassVar[str]  # the command that writes it

    def file(self, ctx: SourceContext) -> str:
        return _lookup(ctx.config, self.output_key)

    def require(self, ctx: SourceContext) -> None:
        path = self.file(ctx)
        if not ctx.is_file(path):
            raise ConfigError(
                f"{ctx.key}: {self.spelled} reads {path} ({self.output_key}), which does not exist: "
                f"run {self.job} first"
            )

    def mixture(self, ctx: SourceContext) -> Mixture:
        return ctx.read_mixture(self.file(ctx), ctx.key)


def _lookup(config: PipelineConfig, dotted: str) -> str:
    return str(functools.reduce(getattr, dotted.split("."), config))


@register
class Natural(MixtureSource):
    """The pool's own token shares."""

    name = pattern = "natural"
    needs_tokens = True

    def mixture(self, ctx: SourceContext) -> Mixture:
        return Mixture.natural(ctx.pool_tokens(self.name), **ctx.tokens_provenance)


@register
class Uniform(MixtureSource):
    """Equal shares (also what the Uniform reweighting baseline gives: α = 1/M, nothing trained)."""

    name = pattern = "uniform"

    def mixture(self, ctx: SourceContext) -> Mixture:
        return Mixture.uniform(ctx.require_domains(self.name))


@register
class Entropy(JobOutput):
    """``quadmix entropy``'s softmax mixture of one measure."""

    name = "entropy"
    pattern = "entropy:<measure>"
    argument = "measure"
    output_key = "entropy.output_dir"
    job = "quadmix entropy"

    def check(self, key: str) -> None:
        if self.arg not in MEASURES:
            raise ConfigError(
                f"{key}: {self.spelled!r}: {self.arg!r} is not a measure ({', '.join(MEASURES)})"
            )

    def file(self, ctx: SourceContext) -> str:
        return ctx.join(_lookup(ctx.config, self.output_key), f"mixture_entropy_{self.arg}.yaml")


@register
class Bimix(JobOutput):
    """BiMix's optimal mixture r*."""

    name = pattern = "bimix"
    output_key = "bimix.output_mixture"
    job = "quadmix bimix"


@register
class Regmix(JobOutput):
    """RegMix's r*: the mean of the best candidates under the fitted regressor."""

    name = pattern = "regmix"
    output_key = "search.output_mixture"
    job = "quadmix fit-search (search.mode: regmix)"


class _Reweighted(JobOutput):
    """An online reweighter's mixture: ``mixture_<method>.yaml`` in ``reweight.output_dir``, the
    averaged or the last α as ``reweight.final.<method>`` says (the job writes the one it names)."""

    output_key = "reweight.output_dir"

    def file(self, ctx: SourceContext) -> str:
        return ctx.join(_lookup(ctx.config, self.output_key), f"mixture_{self.name}.yaml")

    def mixture(self, ctx: SourceContext) -> Mixture:
        mixture = super().mixture(ctx)
        wanted = ctx.config.reweight.final.get(self.name, "avg")
        # files written before both were kept say "average" (the classes' name); others say nothing
        held = {"average": "avg"}.get(mixture.provenance.get("final"), mixture.provenance.get("final"))
        if held is not None and held != wanted:
            other = ctx.join(_lookup(ctx.config, self.output_key), f"mixture_{self.name}_{wanted}.yaml")
            raise ConfigError(
                f"{ctx.key}: {self.name}: reweight.final.{self.name} is {wanted}, but {self.file(ctx)} holds "
                f"the {held} α: rerun {self.job} to rewrite it (ok runs are not trained again), or name "
                f"{other}"
            )
        return mixture


@register
class Tandem(_Reweighted):
    """TANDEM's mixture (twin networks)."""

    name = pattern = "tandem"
    job = "quadmix reweight --method tandem"


@register
class Doremi(_Reweighted):
    """DoReMi's mixture (group DRO over excess losses)."""

    name = pattern = "doremi"
    job = "quadmix reweight --method doremi"
