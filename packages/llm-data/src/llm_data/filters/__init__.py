"""Quality filters and transforms: each a small class with one method and a reason for every drop."""
