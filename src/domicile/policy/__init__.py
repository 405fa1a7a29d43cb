"""Policy: Cedar policies decide every access to personal data (see docs/policies.md).

The pure part — :mod:`~domicile.policy.model`, :mod:`~domicile.policy.config`,
:mod:`~domicile.policy.snapshot`, :mod:`~domicile.policy.engine`,
:mod:`~domicile.policy.cache` and :mod:`~domicile.policy.testcases` — takes values and
returns values, so the independent monitor can import it to replay decisions.
:mod:`~domicile.policy.adapter` is the gateway's side (it knows ``AccessRequest`` and
``Decision``) and :mod:`~domicile.policy.cli` the ``domicile policy`` commands; neither
is imported here.
"""

from domicile.policy.cache import DecisionCache
from domicile.policy.config import PolicyConfig, load_policy_config, parse_policy_config
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import (
    NO_GRANT,
    CedarRequest,
    DataResource,
    FieldDecision,
    GrantState,
    PolicyContext,
    PolicyDecision,
    PolicyPrincipal,
    PolicyRequest,
    SettingResource,
    Verdict,
)

__all__ = [
    "NO_GRANT",
    "CedarRequest",
    "DataResource",
    "DecisionCache",
    "FieldDecision",
    "GrantState",
    "PolicyConfig",
    "PolicyContext",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyPrincipal",
    "PolicyRequest",
    "SettingResource",
    "Verdict",
    "load_policy_config",
    "parse_policy_config",
]
