"""`PeftType.GPART`: GPart's member of peft's closed `PeftType` enum.

peft keys every method by a member of its `PeftType` enum and `register_peft_method`
refuses names that are not members (peft 0.21). The enum is closed, so we add one member,
``GPART``, the way `enum` itself builds members. The member is a real `PeftType`:
`PeftType("GPART")`, `PeftType.GPART` and `list(PeftType)` all see it, and
`adapter_config.json` records ``"peft_type": "GPART"``.

This module is the bottom of the tuner: it imports nothing of gpart, so `config.py` can
take `GPART_PEFT_TYPE` from it. Registering the config and tuner classes with peft (peft's
own `register_peft_method`) happens in `gpart/tuner/__init__.py`, once both classes exist,
the way peft registers its built-in methods in each method package's `__init__`.
"""

from __future__ import annotations

from peft.utils.peft_types import PeftType

GPART_NAME = "gpart"


def _add_enum_member(enum_cls: type, name: str, value: str):
    """Add `name = value` to a str-valued Enum class in place and return the member.

    Idempotent. Uses only the attributes `enum` documents for introspection
    (`__members__`) plus the three internal maps every CPython >= 3.11 keeps in step.
    """
    if name in enum_cls.__members__:
        return enum_cls[name]
    member = str.__new__(enum_cls, value)
    member._name_ = name
    member._value_ = value
    if hasattr(member, "_sort_order_"):
        member._sort_order_ = len(enum_cls._member_names_)
    enum_cls._member_names_.append(name)
    enum_cls._member_map_[name] = member
    enum_cls._value2member_map_[value] = member
    # EnumType.__setattr__ refuses to rebind members, but this name is not one yet.
    type.__setattr__(enum_cls, name, member)
    return member


GPART_PEFT_TYPE = _add_enum_member(PeftType, GPART_NAME.upper(), GPART_NAME.upper())
