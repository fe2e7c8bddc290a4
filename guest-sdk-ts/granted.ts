// The capabilities this guest imports. `rawalite build` rewrites this file
// in its copy of the SDK with `null` for each capability the manifest does
// not grant, so the component imports exactly its grants (a TypeScript
// guest's imports are fixed when it is bundled).
import * as dbImport from 'rawalite:bridge/db@0.1.0';
import * as pathsImport from 'rawalite:bridge/paths@0.1.0';

export const db: typeof dbImport | null = dbImport;
export const paths: typeof pathsImport | null = pathsImport;
