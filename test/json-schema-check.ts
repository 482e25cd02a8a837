// An independent check that a parsed value satisfies a schema of the supported subset (the tests'
// oracle: it shares no code with lib/structured).

type Schema = Record<string, unknown>;

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'array':
      return Array.isArray(value);
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    default:
      throw new Error(`unknown type ${type}`);
  }
}

/** Why `value` breaks `schema` (a JSON Pointer and a reason), or null when it satisfies it. */
export function schemaViolation(value: unknown, schema: Schema, at = '#'): string | null {
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => hasType(value, t))) return `${at}: ${JSON.stringify(value)} is not ${types.join('|')}`;
  }
  if ('const' in schema && JSON.stringify(value) !== JSON.stringify(schema.const)) return `${at}: not the const`;
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) return `${at}: ${JSON.stringify(value)} not in the enum`;
  if (hasType(value, 'object')) {
    const object = value as Record<string, unknown>;
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) if (!(name in object)) return `${at}: '${name}' is missing`;
    for (const [name, v] of Object.entries(object)) {
      if (name in properties) {
        const why = schemaViolation(v, properties[name], `${at}/${name}`);
        if (why) return why;
      } else if (schema.additionalProperties === false) return `${at}: '${name}' is not allowed`;
    }
  }
  if (Array.isArray(value) && schema.items !== undefined) {
    for (let i = 0; i < value.length; i++) {
      const why = schemaViolation(value[i], schema.items as Schema, `${at}/${i}`);
      if (why) return why;
    }
  }
  return null;
}

/** Objects in arrays, enums, integers, required properties, nullable fields and a nested object. */
export const NESTED_SCHEMA = {
  title: 'A team',
  type: 'object',
  properties: {
    team: { type: 'string', description: 'its name' },
    size: { type: 'integer' },
    active: { type: 'boolean' },
    members: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          role: { enum: ['lead', 'dev', 'ops'] },
          age: { type: 'integer' },
          nickname: { type: ['string', 'null'] },
        },
        required: ['role', 'age', 'nickname'],
        additionalProperties: false,
      },
    },
    home: { type: 'object', properties: { lat: { type: 'number' }, ok: { const: true } }, required: ['lat', 'ok'] },
  },
  required: ['team', 'size', 'members', 'home'],
  additionalProperties: false,
};
