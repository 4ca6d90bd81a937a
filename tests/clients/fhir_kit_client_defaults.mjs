// fhir-kit-client (npm) against the local stack with its default calls:
// create, conditional create (If-None-Exist), read, vread, update (PUT
// without If-Match), JSON Patch, instance history, search with paging
// (nextPage), delete. Run by tests/tests/client_libraries.rs with
// MEDREC_BASE, MEDREC_TOKEN (clinician), MEDREC_ADMIN_TOKEN and MEDREC_TAG.
import { Client } from 'fhir-kit-client';

const { MEDREC_BASE: baseUrl, MEDREC_TOKEN: token, MEDREC_ADMIN_TOKEN: adminToken, MEDREC_TAG: tag } = process.env;
const client = new Client({ baseUrl, bearerToken: token });
const admin = new Client({ baseUrl, bearerToken: adminToken });

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const patient = (given) => ({
  resourceType: 'Patient',
  identifier: [{ system: 'urn:medrec:test-mrn', value: `${tag}-${given}` }],
  name: [{ family: tag, given: [given] }],
  gender: 'female',
  birthDate: '1961-07-13',
});

try {
  const created = await client.create({ resourceType: 'Patient', body: patient('Ada') });
  check(created.id && created.meta.versionId === '1', 'create');
  const again = await client.create({
    resourceType: 'Patient',
    body: patient('Ada'),
    options: { headers: { 'If-None-Exist': `identifier=urn:medrec:test-mrn|${tag}-Ada` } },
  });
  check(again.id === created.id, 'conditional create finds the existing patient');

  const read = await client.read({ resourceType: 'Patient', id: created.id });
  check(read.name[0].family === tag, 'read');
  const updated = await client.update({ resourceType: 'Patient', id: created.id, body: { ...read, gender: 'other' } });
  check(updated.meta.versionId === '2' && updated.gender === 'other', 'update without If-Match');
  const patched = await client.patch({
    resourceType: 'Patient',
    id: created.id,
    jsonPatch: [{ op: 'replace', path: '/birthDate', value: '1961-07-14' }],
  });
  check(patched.meta.versionId === '3' && patched.birthDate === '1961-07-14', 'JSON Patch without If-Match');
  const v1 = await client.vread({ resourceType: 'Patient', id: created.id, version: '1' });
  check(v1.gender === 'female', 'vread');
  const history = await client.history({ resourceType: 'Patient', id: created.id });
  check(history.type === 'history' && history.entry.length === 3, 'instance history');
  check(history.entry.every((e) => e.response.lastModified && !('lastUpdated' in e.response)), 'history entries per R4');

  for (const given of ['Bea', 'Cy', 'Di']) {
    await client.create({ resourceType: 'Patient', body: patient(given) });
  }
  const ids = new Set();
  let page = await client.search({ resourceType: 'Patient', searchParams: { family: tag, _count: 3 } });
  let pages = 0;
  while (page) {
    pages += 1;
    for (const e of page.entry ?? []) {
      if (e.search.mode === 'match') ids.add(e.resource.id);
    }
    page = await client.nextPage({ bundle: page });
  }
  check(ids.size === 4 && pages === 2, `search pages followed with nextPage: ${ids.size} patients in ${pages} pages`);

  await admin.delete({ resourceType: 'Patient', id: created.id });
  try {
    await client.read({ resourceType: 'Patient', id: created.id });
    check(false, 'a deleted patient is gone');
  } catch (e) {
    check(e.response?.status === 410, 'a deleted patient is 410 Gone');
  }
  console.log('fhir-kit-client: all default calls served');
} catch (e) {
  console.error(`FAILED: ${e.message} ${e.response?.status ?? ''} ${JSON.stringify(e.response?.data ?? '')}`);
  process.exit(1);
}
