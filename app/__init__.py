"""Passerelle: orientation from France Services' front desk to digital mediation."""

import warnings

from authlib.deprecate import AuthlibDeprecationWarning

# Authlib (app.services.oidc) announces on import that its httpx integration will move to the
# httpx2 package, with a filter of its own that shows it always: every `passerelle serve`
# printed it to the person starting the service. Nothing to do until Authlib makes the move
# (an import that then fails fails the tests); its other warnings still show.
warnings.filterwarnings(
    "ignore", message="The httpx module is deprecated", category=AuthlibDeprecationWarning
)
