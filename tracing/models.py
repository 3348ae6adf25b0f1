from django.db import models

from tracing.context import current_trace_id


class TraceStamped(models.Model):
    """A row that remembers the trace of the unit of work that created it.

    Concrete subclasses are found by the trace search (`tracing.selectors`), so
    an app only has to inherit from this for its rows to show up there.
    """

    trace_id = models.CharField(max_length=32, blank=True, default=current_trace_id, db_index=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True

    def trace_summary(self) -> str:
        """One line for the trace timeline; subclasses may say more."""
        return str(self)
