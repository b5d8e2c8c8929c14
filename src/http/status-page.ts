/*
 * The status page at `/`: one HTML document with inline CSS and JS, no framework, no external
 * resource (the CSP allows none). Views are chosen by the URL hash so that each can be linked:
 * #/ the overview, #/browse/… the store, #/eviction, #/fleet. The page fetches /api/status
 * every 5 s (and /api/fleet every 5 s while the fleet view is open); the store browser and
 * the eviction preview ask their API only when opened or asked. Kept as modules (not files
 * read at run time) so the esbuild bundle carries them.
 */
import { BROWSE_MARKUP, BROWSE_SCRIPT } from './status-page/browse.ts';
import { COMMON_SCRIPT } from './status-page/common.ts';
import { EVICTION_MARKUP, EVICTION_SCRIPT } from './status-page/eviction.ts';
import { FLEET_MARKUP, FLEET_SCRIPT } from './status-page/fleet.ts';
import { OVERVIEW_MARKUP, OVERVIEW_SCRIPT } from './status-page/overview.ts';
import { STYLES } from './status-page/styles.ts';

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pullmirror</title>
<link rel="icon" href="data:,">
<style>
${STYLES}</style>
</head>
<body>
<h1>pullmirror</h1>
<div class="sub">upstream <span id="upstream">…</span><span id="registries"></span> · updated <span id="updated">never</span> <span id="error"></span></div>
<nav id="nav">
  <a href="#/" data-view="overview">Overview</a>
  <a href="#/browse" data-view="browse">Browse</a>
  <a href="#/eviction" data-view="eviction">Eviction</a>
  <a href="#/fleet" data-view="fleet">Fleet</a>
</nav>
<section id="view-overview" data-view="overview">
${OVERVIEW_MARKUP}</section>
<section id="view-browse" data-view="browse" hidden>
${BROWSE_MARKUP}</section>
<section id="view-eviction" data-view="eviction" hidden>
${EVICTION_MARKUP}</section>
<section id="view-fleet" data-view="fleet" hidden>
${FLEET_MARKUP}</section>
<script>
'use strict';
${COMMON_SCRIPT}
${OVERVIEW_SCRIPT}
${BROWSE_SCRIPT}
${EVICTION_SCRIPT}
${FLEET_SCRIPT}
startPage();
</script>
</body>
</html>
`;
