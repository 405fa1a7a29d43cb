"""A region's vault: sealed field values per subject, and tombstones once they are gone."""
