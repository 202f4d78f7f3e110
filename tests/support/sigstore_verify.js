// Verify Sigstore bundles with sigstore-js (@sigstore/bundle, @sigstore/verify), independently of envbuild.
//
//   node sigstore_verify.js NODE_MODULES PUBLIC_KEY.pem BUNDLE.json...
//
// The trust material holds only the given public key, under the hint sigstore-js computes itself
// (base64 of the SHA-256 of its DER SubjectPublicKeyInfo, as cosign does), so a bundle naming another
// key fails with "key not found". Key-based bundles carry no transparency-log entry, SCT or signed
// timestamp: the thresholds for them are 0. Prints one JSON result per bundle, in order; exits 0
// unless the script itself cannot run (the caller judges each result).
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const [modules, keyFile, ...bundleFiles] = process.argv.slice(2);
const { bundleFromJSON } = require(path.join(modules, "@sigstore", "bundle"));
const { Verifier, toSignedEntity, toTrustMaterial } = require(path.join(modules, "@sigstore", "verify"));

const der = crypto.createPublicKey(fs.readFileSync(keyFile)).export({ type: "spki", format: "der" });
const hint = crypto.createHash("sha256").update(der).digest("base64");
const root = { mediaType: "", certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
const trust = toTrustMaterial(root, { [hint]: { rawBytes: der } });
const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });

const results = bundleFiles.map((file) => {
  try {
    const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(file, "utf8")));
    verifier.verify(toSignedEntity(bundle));
    const envelope = bundle.content.dsseEnvelope;
    const statement = JSON.parse(Buffer.from(envelope.payload).toString("utf8"));
    return {
      file: path.basename(file),
      verified: true,
      keyHint: hint,
      payloadType: envelope.payloadType,
      predicateType: statement.predicateType,
      subject: statement.subject,
    };
  } catch (error) {
    const code = error.code ? `${error.code}: ` : "";
    return { file: path.basename(file), verified: false, error: `${error.name}: ${code}${error.message}` };
  }
});
process.stdout.write(JSON.stringify(results));
