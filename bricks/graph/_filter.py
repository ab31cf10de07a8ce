"""``VariableFilter``: select variables by role, brick, application and name."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from bricks.core.application import Application, BoundApplication
from bricks.core.roles import AUXILIARY, VariableRole
from bricks.core.tracing import Variable
from bricks.errors import GraphError, GraphTypeError

__all__ = ["VariableFilter"]


class VariableFilter:
    """A predicate over variables; calling it on a list keeps the matches.

    All given criteria must hold.

    Args:
        roles: keep variables with any of these roles (sub-roles match their
            parents: a ``WEIGHT`` is a ``PARAMETER``); with ``each_role``,
            variables must have all of them.
        bricks: brick classes (matches instances of subclasses too) or brick
            instances.
        applications: applications whose inputs and outputs to keep: bound
            (``mlp.apply``: that brick's) or unbound (``Linear.apply``: those
            of every brick of that class).
        name: exact variable name (``"output"``, ``"W"``).
        name_regex: a regular expression matched (``re.match``) against names.
        path_regex: a regular expression searched in the tag (brick path,
            application, name, scan scope), e.g. ``r"^/lstm"``.
        scan: ``True`` keeps only variables computed inside scans, ``False``
            only those outside; ``None`` both.
        call_id: the ``call_id=`` of an application call (Blocks'
            ``brick.apply(x, call_id="...")``).
        theano_name, theano_name_regex: Blocks matched Theano's own variable
            names, the names users gave; here those are the names given with
            :func:`~bricks.core.annotate` outside any brick.

    ``roles``, ``bricks`` and ``applications`` must be lists (a bare role or
    application is a :class:`~bricks.errors.GraphTypeError`, a ``TypeError``,
    as in Blocks).

    >>> from bricks.core import WEIGHT, Linear
    >>> f = VariableFilter(roles=[WEIGHT], bricks=[Linear])
    """

    def __init__(
        self,
        roles: Sequence[VariableRole] | None = None,
        bricks: Sequence[Any] | None = None,
        each_role: bool = False,
        name: str | None = None,
        name_regex: str | None = None,
        applications: Sequence[BoundApplication] | None = None,
        path_regex: str | None = None,
        scan: bool | None = None,
        call_id: str | None = None,
        theano_name: str | None = None,
        theano_name_regex: str | None = None,
    ) -> None:
        for what, value in (("roles", roles), ("bricks", bricks), ("applications", applications)):
            if value is not None and not isinstance(value, (list, tuple, set)):
                raise GraphTypeError(
                    f"VariableFilter({what}=...) takes a list, got {type(value).__name__} "
                    f"{value!r}; write {what}=[...]"
                )
        if roles is not None and not all(isinstance(r, VariableRole) for r in roles):
            raise GraphError(f"roles must be role constants such as WEIGHT, got {roles!r}")
        self.roles = list(roles) if roles is not None else None
        self.bricks = list(bricks) if bricks is not None else None
        self.each_role = each_role
        self.name = name
        self.name_regex = re.compile(name_regex) if name_regex is not None else None
        self.applications = list(applications) if applications is not None else None
        self.path_regex = re.compile(path_regex) if path_regex is not None else None
        self.scan = scan
        self.call_id = call_id
        self.theano_name = theano_name
        self.theano_name_regex = (
            re.compile(theano_name_regex) if theano_name_regex is not None else None
        )

    def matches(self, var: Variable) -> bool:
        if self.roles is not None:
            hits = [any(r.is_a(want) for r in var.roles) for want in self.roles]
            if not (all(hits) if self.each_role else any(hits)):
                return False
        if self.bricks is not None:
            if var.brick is None:
                return False
            ok = any(
                isinstance(var.brick, b) if isinstance(b, type) else var.brick is b
                for b in self.bricks
            )
            if not ok:
                return False
        if self.applications is not None and (
            var.has_role(AUXILIARY)
            or not any(_is_of(var, app) for app in self.applications)
        ):
            return False
        if self.call_id is not None and var.call_id != self.call_id:
            return False
        if (self.theano_name is not None or self.theano_name_regex is not None) and (
            var.brick is not None
            or (self.theano_name is not None and var.name != self.theano_name)
            or (
                self.theano_name_regex is not None
                and not self.theano_name_regex.match(var.name)
            )
        ):
            return False
        if self.name is not None and var.name != self.name:
            return False
        if self.name_regex is not None and not self.name_regex.match(var.name):
            return False
        if self.path_regex is not None and not self.path_regex.search(var.tag):
            return False
        if self.scan is not None and (var.scan_scope is not None) != self.scan:
            return False
        return True

    def __call__(self, variables: Iterable[Variable]) -> list[Variable]:
        return [v for v in variables if self.matches(v)]


def _is_of(var: Variable, app: Any) -> bool:
    """Whether ``var`` is an input or output of ``app`` (bound or unbound)."""
    if isinstance(app, BoundApplication):
        return var.brick is app.brick and var.application == app.name
    if isinstance(app, Application):
        owner = app.owner if app.owner is not None else object
        return isinstance(var.brick, owner) and var.application == app.name
    raise GraphTypeError(
        f"VariableFilter(applications=[...]) takes applications (brick.apply or "
        f"Linear.apply), got {type(app).__name__}"
    )
