"""Privacy-enhancing transforms: pure functions applied to anything leaving a region.

See ``docs/transfers.md``. Keys come from a `PetKeys` of the home region and never
leave it; every function here takes values and returns values.
"""

from domicile.pets.generalise import (
    CountryLocator,
    calling_code,
    generalise_coordinates,
    generalise_ip,
    generalise_year,
    grid_cell,
)
from domicile.pets.kanon import (
    KAnonymityChecker,
    KAnonymityReport,
    KAnonymousCounts,
    check_k_anonymity,
    k_anonymous_counts,
    verify_k_anonymous,
)
from domicile.pets.keyed import is_pseudonym, pseudonymise, resolve_token, tokenise
from domicile.pets.keys import LocalPetKeys, PetKeys, create_secret_file
from domicile.pets.transform import (
    FITS,
    FieldPlan,
    TransformOptions,
    apply_transform,
    transform_values,
    verify_fits,
)

__all__ = [
    "FITS",
    "CountryLocator",
    "FieldPlan",
    "KAnonymityChecker",
    "KAnonymityReport",
    "KAnonymousCounts",
    "LocalPetKeys",
    "PetKeys",
    "TransformOptions",
    "apply_transform",
    "calling_code",
    "check_k_anonymity",
    "create_secret_file",
    "generalise_coordinates",
    "generalise_ip",
    "generalise_year",
    "grid_cell",
    "is_pseudonym",
    "k_anonymous_counts",
    "pseudonymise",
    "resolve_token",
    "tokenise",
    "transform_values",
    "verify_fits",
    "verify_k_anonymous",
]
