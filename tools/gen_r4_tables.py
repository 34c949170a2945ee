#!/usr/bin/env python3
"""Generate issho's compact FHIR R4 (4.0.1) tables from the CC0 specification package.

Usage: python3 tools/gen_r4_tables.py [SHARED_DIR]   (default ../shared)

Reads the R4 StructureDefinitions, SearchParameters, CompartmentDefinitions, ValueSets and
CodeSystems and writes crates/issho-model/data/r4.json: a compact table of every type's
elements (cardinality, types, required and extensible bindings, summary flags, the invariants each type
defines), search parameters, the
patient compartment and the expanded code lists of required-strength value sets.
The output is deterministic (sorted keys), so re-running it yields the same file.
"""
import json, os, sys, tarfile

shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', '..', 'shared')
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
out_path = os.path.join(root, 'crates', 'issho-model', 'data', 'r4.json')

FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type'

pkg = {}
with tarfile.open(os.path.join(shared, 'fhir-r4', 'hl7.fhir.r4.examples-4.0.1.tgz')) as tf:
    for m in tf.getmembers():
        name = m.name.split('/')[-1]
        if not m.isfile() or not name.endswith('.json') or name.startswith('.') or name == 'package.json':
            continue
        if name.split('-')[0] in ('StructureDefinition', 'ValueSet', 'CodeSystem', 'CompartmentDefinition'):
            pkg[name] = json.load(tf.extractfile(m))


def load_bundle(name):
    with open(os.path.join(shared, 'fhir-r4', name)) as f:
        return [e['resource'] for e in json.load(f)['entry']]


# The specification's types, and the profiles of Quantity it uses as types (SimpleQuantity and
# MoneyQuantity: elements are typed with them).
sds = [r for r in load_bundle('Bundle-types.json') + load_bundle('Bundle-resources.json')
       if r['resourceType'] == 'StructureDefinition'
       and (r.get('derivation') in ('specialization', None)
            or (r.get('derivation') == 'constraint' and r.get('type') == 'Quantity'
                and r['url'].startswith('http://hl7.org/fhir/StructureDefinition/')))
       and r['kind'] in ('primitive-type', 'complex-type', 'resource')]

required_vs = set()


def type_code(t):
    for ext in t.get('extension', []):
        if ext['url'] == FHIR_TYPE_EXT:
            return ext['valueUrl']
    code = t['code']
    return code.rsplit('.', 1)[-1].lower() if code.startswith('http://hl7.org/fhirpath/System.') else code


# Left out: ele-1 (checked natively by the validators) and txt-1/txt-2 (`htmlChecks()`, which
# issho-fhirpath does not implement; issho-model checks the XHTML rules of txt-1).
NOT_EVALUATED = {'ele-1', 'txt-1', 'txt-2'}
# R4 expressions that are wrong as FHIRPath, as R5 corrected them.
CORRECTED = {
    # R4 asks `answer is Boolean` (System.Boolean), which a FHIR boolean is not.
    'que-7': "operator = 'exists' implies (answer is boolean)",
}
# The constraints each type defines on its root (an element of that type need not repeat them).
ROOT_KEYS = {sd['id']: {c['key'] for c in sd['snapshot']['element'][0].get('constraint', [])}
             for sd in sds}


def own_invariants(sd, el):
    """The element's constraints defined by this type (not inherited, not those of the
    element's own type): [key, severity, human, expression]."""
    typed = set()
    for t in el.get('type', []):
        typed |= ROOT_KEYS.get(type_code(t), set())
    return [[c['key'], c['severity'], c['human'], CORRECTED.get(c['key'], c['expression'])]
            for c in el.get('constraint', [])
            if c.get('source') in (None, sd['url']) and c['key'] not in NOT_EVALUATED
            and 'expression' in c and ('.' not in el['path'] or c['key'] not in typed)]


types = {}
for sd in sds:
    name = sd['id']
    if sd.get('derivation') is None and name not in ('Resource', 'Element'):
        continue  # constraint profiles are not base types
    base = sd.get('baseDefinition', '').rsplit('/', 1)[-1] or None
    elements = []
    own_inv = []
    for el in sd['snapshot']['element']:
        path = el['path']
        inv = own_invariants(sd, el)
        if '.' not in path:
            own_inv = inv
            continue
        rel = path.split('.', 1)[1]
        e = {'path': rel, 'min': el.get('min', 0), 'max': el.get('max', '*')}
        if 'contentReference' in el:
            e['ref'] = el['contentReference'].lstrip('#').split('.', 1)[1] if '.' in el['contentReference'] else ''
        else:
            ts = []
            for t in el.get('type', []):
                tc = type_code(t)
                entry = {'code': tc}
                tp = [p.rsplit('/', 1)[-1] for p in t.get('targetProfile', [])]
                if tp and tc in ('Reference', 'canonical'):
                    entry['targets'] = tp
                if t.get('profile'):
                    entry['profile'] = [p.rsplit('/', 1)[-1] for p in t['profile']]
                ts.append(entry)
            e['types'] = ts
        b = el.get('binding')
        if b and b.get('strength') == 'required' and b.get('valueSet'):
            vs = b['valueSet'].split('|')[0]
            e['binding'] = vs
            required_vs.add(vs)
        if b and b.get('strength') == 'extensible' and b.get('valueSet'):
            e['extensible'] = b['valueSet'].split('|')[0]
        if el.get('isSummary'):
            e['summary'] = True
        if el.get('isModifier'):
            e['modifier'] = True
        if inv:
            e['inv'] = inv
        elements.append(e)
    types[name] = {
        'kind': sd['kind'],
        'abstract': sd.get('abstract', False),
        'base': base if base != name else None,
        'elements': elements,
    }
    if own_inv:
        types[name]['inv'] = own_inv
    if sd['type'] != name:
        types[name]['root'] = sd['type']  # SimpleQuantity's elements are Quantity.*

# --- value sets -------------------------------------------------------------------------
code_systems = {r['url']: r for n, r in pkg.items() if r['resourceType'] == 'CodeSystem'}
value_sets = {r['url']: r for n, r in pkg.items() if r['resourceType'] == 'ValueSet'}


def cs_codes(cs):
    out = []

    def walk(concepts):
        for c in concepts:
            out.append(c['code'])
            walk(c.get('concept', []))
    walk(cs.get('concept', []))
    return out


def expand(url, seen=()):
    """Return (set of (system, code), complete?)"""
    vs = value_sets.get(url)
    if vs is None or url in seen:
        return set(), False
    codes, complete = set(), True
    compose = vs.get('compose', {})
    if compose.get('exclude'):
        complete = False
    for inc in compose.get('include', []):
        system = inc.get('system')
        if inc.get('filter'):
            complete = False
            continue
        if inc.get('concept'):
            codes |= {(system, c['code']) for c in inc['concept']}
        elif system:
            cs = code_systems.get(system)
            if cs is None or cs.get('content') not in ('complete', None):
                complete = False
            else:
                codes |= {(system, c) for c in cs_codes(cs)}
        for sub in inc.get('valueSet', []):
            c2, ok = expand(sub.split('|')[0], seen + (url,))
            codes |= c2
            complete = complete and ok
    return codes, complete


valuesets = {}
for url in sorted(required_vs):
    codes, complete = expand(url)
    if complete and codes:
        valuesets[url] = sorted([s or '', c] for s, c in codes)

# --- search parameters ------------------------------------------------------------------
params = []
for sp in load_bundle('Bundle-searchParams.json'):
    if sp['resourceType'] != 'SearchParameter':
        continue
    p = {'url': sp['url'], 'code': sp['code'], 'base': sp['base'], 'type': sp['type']}
    for k in ('expression', 'target', 'modifier', 'comparator', 'multipleOr', 'multipleAnd'):
        if k in sp:
            p[k] = sp[k]
    if 'component' in sp:
        p['component'] = [{'definition': c['definition'], 'expression': c['expression']} for c in sp['component']]
    params.append(p)
params.sort(key=lambda p: p['url'])

# --- patient compartment ----------------------------------------------------------------
comp = pkg['CompartmentDefinition-patient.json']
patient_compartment = {r['code']: r['param'] for r in comp['resource'] if r.get('param')}

out = {
    'fhirVersion': '4.0.1',
    'types': types,
    'valueSets': valuesets,
    'searchParameters': params,
    'patientCompartment': patient_compartment,
}
with open(out_path, 'w') as f:
    json.dump(out, f, sort_keys=True, separators=(',', ':'), ensure_ascii=False)
    f.write('\n')
print(f'wrote {out_path}: {len(types)} types, {len(valuesets)} value sets, {len(params)} search parameters, '
      f'{len(patient_compartment)} compartment resources; {os.path.getsize(out_path)} bytes')
