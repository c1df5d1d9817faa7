// Build the prebuilt labextension with @jupyterlab/builder, needing only Node.js and npm:
// the core's package description (which packages JupyterLab shares) comes from the npm
// package @jupyterlab/core-meta, so no JupyterLab installation is needed at build time.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const here = __dirname;
const meta = path.join(here, 'node_modules', '@jupyterlab', 'core-meta');
const core = path.join(here, 'node_modules', '.nbflows-core');
fs.mkdirSync(core, { recursive: true });
fs.copyFileSync(path.join(meta, 'core.package.json'), path.join(core, 'package.json'));

const builder = require.resolve('@jupyterlab/builder/lib/build-labextension.js');
const args = [builder, '--core-path', core, ...process.argv.slice(2), here];
execFileSync(process.execPath, args, { stdio: 'inherit', cwd: here });
