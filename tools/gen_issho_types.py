#!/usr/bin/env python3
"""Generate the tables of the resource types issho serves beyond FHIR R4.

Usage: python3 tools/gen_issho_types.py   (after tools/gen_r4_tables.py)

Writes crates/issho-model/data/issho-types.json in the format of r4.json (types and search
parameters), merged into the R4 tables when they load. Today one type:

ViewDefinition — SQL on FHIR v2's logical model of a view (https://sql-on-fhir.org/ig/,
"ViewDefinition"), served as a resource type of its own so that views can be stored, searched
and run by reference (`viewReference`, `ViewDefinition/[id]/$viewdefinition-run`). R4 has no
such type; SQL on FHIR's R4 mode runs views at the system level only, and servers keep them
as their own type. Its elements are those of the logical model (url, identifier, name, title,
status, experimental, publisher, contact, description, useContext, copyright, resource,
fhirVersion, constant, select with column/select/forEach/forEachOrNull/repeat/unionAll, where)
on top of DomainResource's. The search parameters' URLs are issho's own.
"""
import json, os

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
r4_path = os.path.join(root, 'crates', 'issho-model', 'data', 'r4.json')
out_path = os.path.join(root, 'crates', 'issho-model', 'data', 'issho-types.json')

with open(r4_path) as f:
    r4 = json.load(f)

# DomainResource's elements (id, meta, implicitRules, language, text, contained, extension,
# modifierExtension) exactly as R4 gives them to every resource type.
base = [e for e in r4['types']['Linkage']['elements'] if '.' not in e['path']][:8]
assert [e['path'] for e in base] == ['id', 'meta', 'implicitRules', 'language', 'text',
                                     'contained', 'extension', 'modifierExtension'], base

PUBLICATION = 'http://hl7.org/fhir/ValueSet/publication-status'
RESOURCE_TYPES = 'http://hl7.org/fhir/ValueSet/resource-types'
VERSIONS = 'http://hl7.org/fhir/ValueSet/FHIR-version'
CONSTANT_TYPES = ['base64Binary', 'boolean', 'canonical', 'code', 'date', 'dateTime', 'decimal',
                  'id', 'instant', 'integer', 'oid', 'positiveInt', 'string', 'time',
                  'unsignedInt', 'uri', 'url', 'uuid']


def el(path, card, types=None, summary=False, binding=None, ref=None):
    lo, hi = card.split('..')
    e = {'path': path, 'min': int(lo), 'max': hi}
    if ref is not None:
        e['ref'] = ref
    else:
        e['types'] = [{'code': t} for t in (types if isinstance(types, list) else [types])]
    if summary:
        e['summary'] = True
    if binding:
        e['binding'] = binding
    return e


def backbone(path, card, summary=False):
    """A backbone element with its id, extension and modifierExtension."""
    return [el(path, card, 'BackboneElement', summary),
            el(path + '.id', '0..1', 'string'),
            el(path + '.extension', '0..*', 'Extension'),
            {**el(path + '.modifierExtension', '0..*', 'Extension'), 'modifier': True}]


elements = base + [
    el('url', '0..1', 'uri', True),
    el('identifier', '0..1', 'Identifier', True),
    el('name', '0..1', 'string', True),
    el('title', '0..1', 'string', True),
    el('status', '1..1', 'code', True, PUBLICATION),
    el('experimental', '0..1', 'boolean', True),
    el('publisher', '0..1', 'string', True),
    el('contact', '0..*', 'ContactDetail', True),
    el('description', '0..1', 'markdown'),
    el('useContext', '0..*', 'UsageContext', True),
    el('copyright', '0..1', 'markdown'),
    el('resource', '1..1', 'code', True, RESOURCE_TYPES),
    el('fhirVersion', '0..*', 'code', True, VERSIONS),
    *backbone('constant', '0..*'),
    el('constant.name', '1..1', 'string'),
    {**el('constant.value[x]', '1..1', CONSTANT_TYPES)},
    *backbone('select', '1..*'),
    *backbone('select.column', '0..*'),
    el('select.column.path', '1..1', 'string'),
    el('select.column.name', '1..1', 'string'),
    el('select.column.description', '0..1', 'markdown'),
    el('select.column.collection', '0..1', 'boolean'),
    el('select.column.type', '0..1', 'uri'),
    *backbone('select.column.tag', '0..*'),
    el('select.column.tag.name', '1..1', 'string'),
    el('select.column.tag.value', '1..1', 'string'),
    el('select.select', '0..*', ref='select'),
    el('select.forEach', '0..1', 'string'),
    el('select.forEachOrNull', '0..1', 'string'),
    el('select.repeat', '0..*', 'string'),
    el('select.unionAll', '0..*', ref='select'),
    *backbone('where', '0..*'),
    el('where.path', '1..1', 'string'),
    el('where.description', '0..1', 'string'),
]

URL = 'https://issho.example/fhir/SearchParameter/ViewDefinition-'
params = [{'url': URL + code, 'code': code, 'base': ['ViewDefinition'], 'type': kind,
           'expression': 'ViewDefinition.' + code}
          for code, kind in [('url', 'uri'), ('name', 'string'), ('title', 'string'),
                             ('status', 'token'), ('resource', 'token'),
                             ('publisher', 'string')]]

out = {
    'types': {'ViewDefinition': {'kind': 'resource', 'abstract': False, 'base': 'DomainResource',
                                 'elements': elements}},
    'valueSets': {},
    'searchParameters': params,
    'patientCompartment': {},
}
with open(out_path, 'w') as f:
    json.dump(out, f, sort_keys=True, indent=1, ensure_ascii=False)
    f.write('\n')
print(f'wrote {out_path}: {len(out["types"])} type(s), {len(params)} search parameters')
