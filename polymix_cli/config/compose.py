"""Composing the configs with Hydra outside ``@hydra.main``, and explaining a failed
composition option by option.

Hydra checks the overrides against the schema while composing, and stops at the first it
refuses (a wrong type, an unknown key). :func:`explain_composition` composes again with
the group choices and each value override on its own, keeps those Hydra accepts, and
checks the result with the refused values put back in place: every bad option is then
reported at once, in the messages of :mod:`polymix_cli.config.validation`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from polymix_cli.config import schema
from polymix_cli.config.validation import ConfigError, parse_section

__all__ = ["SCHEMA_OF", "compose", "explain_composition"]

# the schema of each primary config
SCHEMA_OF = {
    "train": schema.TrainConfig,
    "evaluate": schema.EvaluateConfig,
    "predict": schema.PredictConfig,
    "design": schema.DesignConfig,
    "suggest": schema.SuggestConfig,
}


def _loader(config_path: str, config_dir: str | None = None) -> Any:
    """A Hydra config loader over ``config_path`` (a folder or a ``pkg://`` path) and the
    user's ``--config-dir`` (searched first)."""
    import os

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    schema.register()
    path = config_path if "://" in config_path else f"file://{config_path}"
    search_path = create_config_search_path(path)
    if config_dir is not None:  # where Hydra puts it: after the shipped configs
        from hydra.core.config_search_path import SearchPathQuery

        search_path.prepend(
            "command-line",
            f"file://{os.path.abspath(config_dir)}",
            anchor=SearchPathQuery(provider="schema"),
        )
    return ConfigLoaderImpl(config_search_path=search_path)


def _load(loader: Any, config_name: str, overrides: Sequence[str]) -> DictConfig:
    from hydra.types import RunMode

    return loader.load_configuration(config_name, list(overrides), run_mode=RunMode.RUN)


def _job(cfg: DictConfig) -> dict[str, Any]:
    """The job's part of a composed config (without ``hydra``) as a plain dict."""
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def compose(
    config_name: str,
    overrides: Sequence[str] = (),
    config_path: str | None = None,
    config_dir: str | None = None,
) -> dict[str, Any]:
    """Compose a config as the ``polymix`` command does, outside ``@hydra.main``.

    Args:
        config_name: The primary config: ``train``, ``evaluate`` or ``predict``.
        overrides: Hydra overrides, e.g. ``["model=pce", "trainer.epochs=10"]``.
        config_path: The folder (or ``pkg://`` path) of the configs; ``None`` for the ones
            shipped with polymix.
        config_dir: The user's ``--config-dir``, or ``None``.

    Returns:
        The resolved config as a plain dict, without the ``hydra`` section.

    Raises:
        ConfigError: Listing every option Hydra refuses (see :func:`explain_composition`).
        hydra.errors.ConfigCompositionException: When the failure is not about the values
            of options (re-raised as Hydra raised it).
    """
    from hydra.errors import ConfigCompositionException

    if config_path is None:
        from polymix_cli.cli.apps import CONFIG_PATH as config_path
    loader = _loader(config_path, config_dir)
    try:
        return _job(_load(loader, config_name, overrides))
    except ConfigCompositionException as err:
        explained = explain_composition(
            config_name, overrides, config_path, err, config_dir=config_dir
        )
        if explained is None:
            raise
        raise explained from None


def _describe(err: BaseException) -> str:
    from polymix_cli.cli.errors import describe_hydra_error

    return describe_hydra_error(err)[2]


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


def _names(message: str, key: str) -> bool:
    """Whether ``message`` is about the option ``key`` or a section above it."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        option = re.escape(".".join(parts[:n]))
        if re.search(rf"(^|\s){option}($|[\s;:=.\[])", message):
            return True
    return False


def explain_composition(
    config_name: str,
    overrides: Sequence[str],
    config_path: str,
    err: BaseException,
    config_dir: str | None = None,
) -> ConfigError | None:
    """Every bad option of a composition that failed with ``err``, as one error.

    Composes again with the group choices, then with each value override on its own (sweep
    overrides are skipped), and checks the accepted ones with the refused values put back
    in place. A refused override the schema's checks let pass is reported in Hydra's words.

    Args:
        config_name: The primary config: ``train``, ``evaluate`` or ``predict``.
        overrides: The overrides of the failed composition.
        config_path: The folder (or ``pkg://`` path) of the configs.
        err: The error the composition failed with.
        config_dir: The user's ``--config-dir``, or ``None``.

    Returns:
        A :class:`~polymix_cli.config.validation.ConfigError` with one message per bad
        option; ``None`` when the failure is not about the values of options (then
        ``err`` says best what went wrong), e.g. for an unknown ``config_name``, an
        unparsable override or a failed config group choice.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cls = SCHEMA_OF.get(config_name)
    if cls is None:
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        loader = _loader(config_path, config_dir)
    except Exception:  # noqa: BLE001 - Hydra's own message says it
        return None
    groups, values = [], []
    for text, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            continue  # composed per job
        is_group = loader.repository.group_exists(override.key_or_group)
        (groups if is_group or override.is_delete() else values).append((text, override))
    try:
        _load(loader, config_name, [t for t, _ in groups])
    except Exception:  # noqa: BLE001 - a config group choice failed: not an option's value
        return None
    kept, refused = [t for t, _ in groups], []
    for text, override in values:
        try:
            _load(loader, config_name, [*kept, text])
            kept.append(text)
        except Exception as failure:  # noqa: BLE001 - refused by the schema
            refused.append((override, failure))
    if not refused:
        return None
    job = _job(_load(loader, config_name, kept))
    for override, _ in refused:
        _set(job, override.key_or_group, override.value())
    try:
        parse_section(cls, job)
        messages: list[str] = []
    except ConfigError as found:
        messages = list(found.messages)
    for override, failure in refused:  # one the checks let pass: in Hydra's words
        if not any(_names(m, override.key_or_group) for m in messages):
            messages.append(_describe(failure))
    return ConfigError(messages)
