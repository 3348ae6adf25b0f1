from django.contrib import admin, messages

from agency.errors import DomainError
from agency.models import ApiKey, IdempotencyRecord
from agency.services import api_key_create, api_key_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scope", "created_at", "last_used_at", "revoked_at", "created_by"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    list_select_related = ["created_by"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at", "trace_id"]
    fields = ["name", "scope", *readonly_fields]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A key's scope is fixed once issued: widen access by issuing a new key.
        return [*self.readonly_fields, "scope"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        created, raw_key = api_key_create(name=obj.name, scope=obj.scope, created_by=request.user)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = (
            created.pk,
            created.prefix,
            created.key_hash,
            created.created_at,
        )
        messages.warning(request, f"Copy this key now, it is not shown again: {raw_key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        revoked = 0
        for api_key in queryset:
            try:
                api_key_revoke(api_key=api_key)
                revoked += 1
            except DomainError:
                pass
        self.message_user(request, f"Revoked {revoked} key(s).")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["key", "principal", "status_code", "created_at", "completed_at"]
    list_filter = ["status_code"]
    search_fields = ["key", "principal"]
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
