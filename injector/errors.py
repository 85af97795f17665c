"""The injector's exception tree: every error says which object is wrong and how to fix it.

    InjectorError              base of everything `injector` raises on purpose
    ├── ConfigError            katib-config or injector options are unusable (fix the config)
    ├── InvalidObjectError     a Trial, Pod or Experiment document is malformed (fix the object)
    ├── DeniedError            the pod cannot be mutated as asked: the webhook denies it (message for the user)
    │   └── EntrypointError    the primary container has no `command` and its image entrypoint is unknown
    └── LookupFailedError      a Kubernetes API or registry call failed (transient or RBAC)
        ├── NotFoundError      the object does not exist (HTTP 404)
        ├── ConflictError      a write lost a race with another writer (HTTP 409)
        └── RegistryError      an image's config could not be read from its registry
            └── RegistryAuthError  the registry refused the credentials, or hides the image from them
"""

from __future__ import annotations


class InjectorError(Exception):
    """Base class of the errors the injector raises."""


class ConfigError(InjectorError, ValueError):
    """The katib-config document (or an injector option) cannot be used."""


class InvalidObjectError(InjectorError, ValueError):
    """A Kubernetes object does not have the shape the injector needs."""


class DeniedError(InjectorError):
    """Admission must be refused; the message is shown to whoever created the pod."""


class EntrypointError(DeniedError):
    """The training command cannot be known without a `command` in the pod spec."""


class LookupFailedError(InjectorError):
    """Reading an object from the Kubernetes API or an image registry failed."""


class NotFoundError(LookupFailedError):
    """The object asked for does not exist."""


class ConflictError(LookupFailedError):
    """A create or update lost a race (the object exists, or changed since it was read)."""


class RegistryError(LookupFailedError):
    """An image registry could not be reached or answered something unusable."""


class RegistryAuthError(RegistryError):
    """The registry answered 401/403/404 for these credentials: another pull secret may still work."""
