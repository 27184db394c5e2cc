// Merged into @jupyter/builder's config (package.json: jupyterlab.webpackConfig). Module ids are
// the modules' names relative to this folder, not hashes that depend on where the checkout lies:
// the committed build (../jupyter_deploy/labextension) is then byte for byte what any checkout
// builds, which .ci/run checks.
module.exports = {
  optimization: {
    moduleIds: 'named'
  }
};
