"""What every recipe section is: typed and strict.

Its own module so that the recipe (`recipe.py`) and the task kinds, which declare their own
`task.*` keys beside the code that reads them (`tasks/`), share it without importing each
other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # extra="forbid" is what turns a typo into an error instead of a silently ignored key;
    # no recipe number may be infinite or NaN (`--set train.lr=.inf` is a mistake).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
