/*
 * The status page's script (bundled by esbuild into status-page.js, served under the page's
 * CSP as a script of its own origin): each view registers itself, then the router starts.
 * The order matters for the /api/status listeners: the overview draws first.
 */
import './overview.ts';
import './browse.ts';
import './eviction.ts';
import './fleet.ts';
import { startPage } from './router.ts';

startPage();
