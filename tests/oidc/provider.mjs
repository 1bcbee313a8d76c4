// A real OpenID Connect provider for the tests (the npm package oidc-provider, as ProConnect
// behaves: authorization code with PKCE, signed ID tokens, userinfo signed as a JWT, the
// ProConnect claims given_name, usual_name, siret). Its development login form takes any
// login: "pc-" and the hexadecimal of the account's e-mail; its names and SIRET come from the
// ACCOUNTS environment variable (JSON: {"e-mail": {"given_name", "usual_name", "siret"}}).
// Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI[,REDIRECT_URI…]
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUris] = process.argv.slice(2);
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris.split(","),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    userinfo_signed_response_alg: 'RS256',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'given_name', 'usual_name', 'siret'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    given_name: ['given_name'],
    usual_name: ['usual_name'],
    siret: ['siret'],
  },
  features: { devInteractions: { enabled: true }, jwtUserinfo: { enabled: true } },
  cookies: { keys: ['passerelle-tests-only'] },
  async findAccount(ctx, id) {
    // The development login form takes the typed login as the account's id (its sub): the
    // tests type "pc-" and the hexadecimal of the e-mail, an opaque identifier as ProConnect's.
    const email = Buffer.from(id.replace(/^pc-/, ''), 'hex').toString().toLowerCase();
    const known = accounts[email] || {};
    const sub = id;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email,
          email_verified: true,
          given_name: known.given_name,
          usual_name: known.usual_name,
          siret: known.siret,
        };
      },
    };
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log('listening'));
