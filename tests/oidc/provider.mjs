// A real OpenID provider for the portal's SSO tests: npm `oidc-provider`
// (panva), pinned by tests/browser/package-lock.json, with its development
// sign-in pages (any login name, any password). The login name is the
// account: its `email` claim is that name, verified unless the name starts
// with `unverified.`.
//
// Environment: OIDC_PROVIDER_LIB (the package's lib/index.js), PORT,
// CLIENT_ID, CLIENT_SECRET, REDIRECT_URI. Prints `ready <issuer>` once
// listening; stops when its standard input closes (the test ended).
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_LIB).href);
const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id.replace(/^unverified\./, ''), email_verified: !id.startsWith('unverified.') };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['tollgate-test-only'] },
  // Under plain HTTP on loopback: no `Secure` cookies expected.
  ttl: { Interaction: 600, Session: 600, Grant: 600, AuthorizationCode: 60, IdToken: 300, AccessToken: 300 },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.stdin.resume();
process.stdin.on('end', () => { server.close(); process.exit(0); });
