"""Progress bars that learners see in notebooks and terminals, and that CI can switch off."""
from __future__ import annotations

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` bar (a widget in notebooks, text in terminals).

    ``enabled=False`` hides it; so does ``TQDM_DISABLE=1`` in the environment, which checked
    notebook runs set. (Passing ``disable=False`` to tqdm would override that variable, which is
    why this helper only ever passes ``disable=True``.)
    """
    from tqdm.auto import tqdm
    if not enabled:
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
