// response_format and JSON Schema, compiled to the value tree that the byte automaton walks
// (automaton.ts). The subset is exactly: type (object, array, string, number, integer, boolean,
// null, or a list of them), properties, required, additionalProperties false, items, enum, const,
// nested to any depth. Every other keyword that constrains a value is refused, naming it and where
// it stands, so that a schema is never silently enforced more loosely than it says.
import { ChaiError } from '../errors';

/** What generate() and ChatSession take as `responseFormat`: OpenAI's response_format, as is. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; schema?: JsonSchema; strict?: boolean | null; description?: string } };

/** A JSON Schema of the supported subset (see ResponseFormat). */
export type JsonSchema = { [keyword: string]: unknown };

/** A literal JSON text's bytes as a trie: enum and const values, true/false/null, object keys. */
export interface LiteralNode {
  readonly next: Map<number, LiteralNode>;
  /** A literal ends here; `payload` says which (an object key's property index, else -1). */
  terminal: boolean;
  payload: number;
}

export interface Property {
  readonly name: string;
  readonly value: ValueNode;
  readonly required: boolean;
}

/**
 * One value of the compiled grammar. Alternatives (a list of types, or any value) are told apart
 * by their first byte, so the automaton never has to keep two readings of the text at once.
 */
export type ValueNode =
  | { readonly kind: 'string' }
  | { readonly kind: 'number'; readonly integer: boolean }
  | { readonly kind: 'literals'; readonly root: LiteralNode }
  | { readonly kind: 'array'; readonly items: ValueNode }
  /** properties null: any keys with any values; else these keys only, in this order. */
  | { readonly kind: 'object'; readonly properties: readonly Property[] | null; readonly keys: readonly LiteralNode[] }
  | { readonly kind: 'choice'; readonly options: readonly ValueNode[] };

/** A compiled response format: the JSON value a generation must produce. */
export interface JsonGrammar {
  readonly root: ValueNode;
  /** For messages and the README: 'json_object' or the schema's name. */
  readonly name: string;
}

const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type TypeName = (typeof TYPES)[number];

const CONSTRAINING = ['type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const'];
/**
 * Annotations: JSON Schema's keywords that describe a value without constraining it. Tools that
 * write schemas (Pydantic, zod's toJSONSchema, OpenAI's own examples) put title, description and
 * $schema everywhere, so refusing them would refuse most real schemas while enforcing nothing more.
 */
const ANNOTATIONS = ['title', 'description', '$comment', '$schema', '$id', 'examples', 'default', 'deprecated', 'readOnly', 'writeOnly'];

const utf8 = new TextEncoder();

function literalTrie(texts: readonly string[], payloads?: readonly number[]): LiteralNode {
  const root: LiteralNode = { next: new Map(), terminal: false, payload: -1 };
  texts.forEach((text, i) => {
    let node = root;
    for (const byte of utf8.encode(text)) {
      let child = node.next.get(byte);
      if (!child) node.next.set(byte, (child = { next: new Map(), terminal: false, payload: -1 }));
      node = child;
    }
    node.terminal = true;
    node.payload = payloads?.[i] ?? -1;
  });
  return root;
}

const STRING: ValueNode = { kind: 'string' };
const NUMBER: ValueNode = { kind: 'number', integer: false };
const INTEGER: ValueNode = { kind: 'number', integer: true };
const BOOLEAN: ValueNode = { kind: 'literals', root: literalTrie(['true', 'false']) };
const NULL: ValueNode = { kind: 'literals', root: literalTrie(['null']) };
const FREE_OBJECT: ValueNode = { kind: 'object', properties: null, keys: [] };
const TRUE_FALSE_NULL: ValueNode = { kind: 'literals', root: literalTrie(['true', 'false', 'null']) };
/** Any JSON value: a choice whose array items are itself. */
export const ANY_JSON_VALUE: ValueNode = (() => {
  const options: ValueNode[] = [FREE_OBJECT, STRING, NUMBER, TRUE_FALSE_NULL];
  const any: ValueNode = { kind: 'choice', options };
  options.push({ kind: 'array', items: any });
  return any;
})();
const ANY_ARRAY: ValueNode = { kind: 'array', items: ANY_JSON_VALUE };

/** Where a keyword stands, as a JSON Pointer into the schema. */
function pointer(path: readonly string[]): string {
  return '#' + path.map((p) => '/' + p.replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

class SchemaCompiler {
  constructor(private readonly option: string) {}

  refuse(path: readonly string[], message: string): never {
    throw new ChaiError('E_INVALID_ARGUMENT', `${this.option}: ${message} (at ${pointer(path)})`, { option: this.option });
  }

  compile(schema: unknown, path: string[]): ValueNode {
    if (schema === true) return ANY_JSON_VALUE;
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
      this.refuse(path, `a schema must be an object, got ${schema === null ? 'null' : Array.isArray(schema) ? 'an array' : JSON.stringify(schema)}`);
    }
    const s = schema as JsonSchema;
    for (const keyword of Object.keys(s)) {
      if (!CONSTRAINING.includes(keyword) && !ANNOTATIONS.includes(keyword)) {
        this.refuse(
          [...path, keyword],
          `the JSON Schema keyword '${keyword}' is not supported; supported: ${CONSTRAINING.join(', ')} (additionalProperties only false), and the annotations ${ANNOTATIONS.join(', ')}`,
        );
      }
    }
    const types = this.types(s.type, [...path, 'type']);
    if ('const' in s || 'enum' in s) return this.literals(s, types, path);
    if (types === null) {
      // No type: what the other keywords say shapes the value, else any value.
      if ('properties' in s || 'required' in s || 'additionalProperties' in s) return this.object(s, path);
      if ('items' in s) return this.array(s, path);
      return ANY_JSON_VALUE;
    }
    const has = (t: TypeName): boolean => types.includes(t);
    for (const keyword of ['properties', 'required', 'additionalProperties'] as const) {
      if (keyword in s && !has('object')) this.refuse([...path, keyword], `'${keyword}' needs type 'object'`);
    }
    if ('items' in s && !has('array')) this.refuse([...path, 'items'], "'items' needs type 'array'");
    const options: ValueNode[] = [];
    if (has('object')) options.push(this.object(s, path));
    if (has('array')) options.push(this.array(s, path));
    if (has('string')) options.push(STRING);
    if (has('number')) options.push(NUMBER);
    else if (has('integer')) options.push(INTEGER);
    if (has('boolean') && has('null')) options.push(TRUE_FALSE_NULL);
    else if (has('boolean')) options.push(BOOLEAN);
    else if (has('null')) options.push(NULL);
    return options.length === 1 ? options[0] : { kind: 'choice', options };
  }

  private types(type: unknown, path: string[]): TypeName[] | null {
    if (type === undefined) return null;
    const list = Array.isArray(type) ? type : [type];
    if (list.length === 0) this.refuse(path, "'type' must name at least one type");
    for (const t of list) {
      if (!TYPES.includes(t as TypeName)) this.refuse(path, `'type' ${JSON.stringify(t)} is not one of ${TYPES.join(', ')}`);
    }
    return list as TypeName[];
  }

  /** const and enum: the values' own JSON texts, those of the listed types only. */
  private literals(s: JsonSchema, types: TypeName[] | null, path: string[]): ValueNode {
    if ('const' in s && 'enum' in s) this.refuse(path, "give 'const' or 'enum', not both");
    const keyword = 'const' in s ? 'const' : 'enum';
    if (keyword === 'enum' && (!Array.isArray(s.enum) || s.enum.length === 0)) this.refuse([...path, 'enum'], "'enum' must be a non-empty array");
    for (const k of ['properties', 'required', 'additionalProperties', 'items']) {
      if (k in s) this.refuse([...path, k], `'${k}' cannot be combined with '${keyword}': the values are given whole`);
    }
    const values = keyword === 'const' ? [s.const] : (s.enum as unknown[]);
    const kept = values.filter((v) => types === null || types.some((t) => typeOf(v, t)));
    if (kept.length === 0) this.refuse([...path, keyword], `no value of '${keyword}' has the type ${JSON.stringify(s.type)}`);
    return { kind: 'literals', root: literalTrie([...new Set(kept.map((v) => JSON.stringify(v)))]) };
  }

  private object(s: JsonSchema, path: string[]): ValueNode {
    const additional = s.additionalProperties;
    if (additional !== undefined && additional !== false) {
      this.refuse([...path, 'additionalProperties'], "only 'additionalProperties: false' is supported (the output never holds properties outside 'properties')");
    }
    const given = s.properties;
    if (given !== undefined && (typeof given !== 'object' || given === null || Array.isArray(given))) this.refuse([...path, 'properties'], "'properties' must be an object");
    const required = s.required ?? [];
    if (!Array.isArray(required) || required.some((r) => typeof r !== 'string')) this.refuse([...path, 'required'], "'required' must be an array of property names");
    const names = Object.keys((given ?? {}) as object);
    for (const r of required as string[]) {
      if (!names.includes(r)) this.refuse([...path, 'required'], `'required' names '${r}', which 'properties' does not define`);
    }
    if (given === undefined && additional === undefined && required.length === 0) return FREE_OBJECT;
    const properties: Property[] = names.map((name) => ({
      name,
      value: this.compile((given as JsonSchema)[name], [...path, 'properties', name]),
      required: (required as string[]).includes(name),
    }));
    // keys[i]: the keys that may come when properties before i are settled: any of i.. up to and
    // including the first required one (those skipped are optional).
    const keys = properties.map((_, i) => {
      let end = i;
      while (end < properties.length - 1 && !properties[end].required) end++;
      const next = Array.from({ length: end - i + 1 }, (_, k) => i + k);
      return literalTrie(
        next.map((j) => JSON.stringify(properties[j].name)),
        next,
      );
    });
    return { kind: 'object', properties, keys };
  }

  private array(s: JsonSchema, path: string[]): ValueNode {
    if (s.items === undefined) return ANY_ARRAY;
    if (Array.isArray(s.items)) this.refuse([...path, 'items'], "'items' must be one schema (tuples are not supported)");
    return { kind: 'array', items: this.compile(s.items, [...path, 'items']) };
  }
}

function typeOf(value: unknown, type: TypeName): boolean {
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
  }
}

/** The grammar a JSON Schema describes; refuses what the subset does not hold (E_INVALID_ARGUMENT naming `option`). */
export function compileJsonSchema(schema: unknown, option = 'responseFormat', name = 'schema'): JsonGrammar {
  return { root: new SchemaCompiler(option).compile(schema, []), name };
}

/**
 * The grammar a response format asks for, or null for free text ({ type: 'text' } or none).
 * json_object: any JSON object. Errors are E_INVALID_ARGUMENT naming `option` and the keyword.
 */
export function compileResponseFormat(format: unknown, option = 'responseFormat'): JsonGrammar | null {
  if (format === undefined || format === null) return null;
  const bad = (message: string): never => {
    throw new ChaiError('E_INVALID_ARGUMENT', `${option}: ${message}`, { option });
  };
  if (typeof format !== 'object' || Array.isArray(format)) bad("must be { type: 'text' | 'json_object' | 'json_schema', ... }");
  const f = format as { type?: unknown; json_schema?: unknown };
  if (f.type === 'text') return null;
  if (f.type === 'json_object') return { root: FREE_OBJECT, name: 'json_object' };
  if (f.type !== 'json_schema') bad(`type must be 'text', 'json_object' or 'json_schema', got ${JSON.stringify(f.type)}`);
  const spec = f.json_schema as { name?: unknown; schema?: unknown; strict?: unknown } | undefined;
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) bad("json_schema must be an object { name, schema, strict? }");
  if (typeof spec!.name !== 'string' || spec!.name.length === 0) bad('json_schema.name must be a non-empty string');
  if (spec!.strict !== undefined && spec!.strict !== null && typeof spec!.strict !== 'boolean') bad('json_schema.strict must be a boolean');
  // Without a schema OpenAI's API takes any JSON; strict or not, the subset is always enforced exactly.
  return compileJsonSchema(spec!.schema ?? {}, option, spec!.name as string);
}
