"""Progress bars that learners see in notebooks and terminals, and that CI can switch off."""
from __future__ import annotations

import os

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` bar (a widget in notebooks, text in terminals).

    ``enabled=False`` hides it; so does ``TQDM_DISABLE=1`` in the environment, which checked
    notebook runs set. (tqdm's notebook bar ignores that variable, so it is read here.)
    """
    from tqdm.auto import tqdm
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
