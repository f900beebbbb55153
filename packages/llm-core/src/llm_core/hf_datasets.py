"""Folders written by Hugging Face ``datasets`` (``save_to_disk``), read the same way by every stage.

``datasets`` is imported only here and only when such a folder is read (``pip install datasets``).
"""

from __future__ import annotations

from typing import Any


def load_saved_dataset(uri: str, split: str | None = None) -> Any:
    """The ``datasets.Dataset`` saved at ``uri`` (a folder, or one ``.arrow`` file).

    A ``DatasetDict`` folder needs ``split`` unless it holds a single split; the error lists the
    splits it has. A plain ``Dataset`` folder takes no split.
    """
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(f"{uri} is a Hugging Face dataset folder; reading it needs the datasets package "
                          "(pip install datasets, or llm-data[hf])") from exc
    if uri.endswith(".arrow"):
        return datasets.Dataset.from_file(uri)
    dataset = datasets.load_from_disk(uri)
    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset)
        if split is None and len(splits) == 1:
            return dataset[splits[0]]
        if split not in dataset:
            given = f"split {split!r} is not one of them" if split else "no split was chosen"
            raise ValueError(f"{uri} holds the splits {splits} and {given}; set the reader's split option "
                             f"(reader_options.split, or split = \"{splits[0]}\")")
        return dataset[split]
    if split is not None:
        raise ValueError(f"{uri} is a single Dataset without splits; remove the split option ({split!r})")
    return dataset
