"use strict";(self.rspackChunkjupyter_deploy=self.rspackChunkjupyter_deploy||[]).push([[232],{"./node_modules/css-loader/dist/cjs.js!./style/base.css"(e,o,r){var t=r("./node_modules/css-loader/dist/runtime/noSourceMaps.js"),a=r.n(t),n=r("./node_modules/css-loader/dist/runtime/api.js"),d=(r.n(n))()(a());d.push([e.id,`/*
 * The jupyter_deploy sidebar. Only JupyterLab's theme variables (--jp-*), so
 * the light and dark themes both work; compact like the other sidebars.
 */

.jd-Sidebar {
  display: flex;
  flex-direction: column;
  min-width: 200px;
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
}

.jd-Header {
  display: flex;
  flex: 0 0 auto;
  align-items: center;
  justify-content: space-between;
  padding: 4px 8px 4px 12px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.jd-Title {
  margin: 0;
  font-size: var(--jp-ui-font-size0);
  font-weight: 600;
  letter-spacing: 1px;
  text-transform: uppercase;
}

.jd-Body {
  flex: 1 1 auto;
  overflow-x: hidden;
  overflow-y: auto;
  padding-bottom: 12px;
}

.jd-SectionTitle,
.jd-SubHeading {
  margin: 12px 0 4px;
  padding: 0 12px;
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  font-weight: 600;
  letter-spacing: 1px;
  text-transform: uppercase;
}

.jd-SubHeading {
  padding: 0;
  margin-top: 8px;
}

.jd-Muted {
  color: var(--jp-ui-font-color2);
}

.jd-Leaf {
  padding: 2px 0 2px 20px;
}

/* Messages: errors, empty and loading states */

.jd-Messages:empty {
  display: none;
}

.jd-Error {
  margin: 6px 8px;
  padding: 6px 8px;
  border-left: 3px solid var(--jp-error-color1);
  background: var(--jp-layout-color2);
  color: var(--jp-error-color1);
  cursor: pointer;
  overflow-wrap: anywhere;
  white-space: pre-wrap;
}

.jd-Daemon {
  display: flex;
  flex-direction: column;
  gap: 6px;
  align-items: flex-start;
  margin: 6px 8px;
  padding: 8px;
  border-left: 3px solid var(--jp-warn-color1);
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
}

.jd-Empty,
.jd-Loading {
  padding: 8px 12px;
  color: var(--jp-ui-font-color2);
}

.jd-Empty {
  font-style: italic;
}

.jd-Loading::before {
  display: inline-block;
  width: 8px;
  height: 8px;
  margin-right: 6px;
  border: 2px solid var(--jp-border-color1);
  border-top-color: var(--jp-brand-color1);
  border-radius: 50%;
  content: '';
  animation: jd-spin 0.8s linear infinite;
}

@keyframes jd-spin {
  to {
    transform: rotate(360deg);
  }
}

/* Buttons */

.jd-IconButton {
  display: inline-flex;
  align-items: center;
  justify-content: center;
  min-width: 20px;
  height: 20px;
  padding: 0 2px;
  border: none;
  border-radius: var(--jp-border-radius);
  background: transparent;
  color: var(--jp-ui-font-color2);
  cursor: pointer;
  font-size: var(--jp-ui-font-size1);
}

.jd-IconButton:hover:not(:disabled) {
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
}

.jd-IconButton:disabled {
  cursor: default;
  opacity: 0.4;
}

.jd-Button {
  padding: 2px 8px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  cursor: pointer;
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
  line-height: 18px;
}

.jd-Button:hover:not(:disabled) {
  background: var(--jp-layout-color2);
}

.jd-Button:focus-visible,
.jd-IconButton:focus-visible,
.jd-NodeHeader:focus-visible,
.jd-Deployment:focus-visible {
  outline: var(--jp-border-width) solid var(--jp-brand-color1);
  outline-offset: -1px;
}

.jd-Button:disabled {
  cursor: default;
  opacity: 0.5;
}

.jd-Button.jd-mod-danger:not(:disabled) {
  border-color: var(--jp-error-color1);
  color: var(--jp-error-color1);
}

.jd-InsertPredictButton:not(:disabled) {
  border-color: var(--jp-brand-color1);
  color: var(--jp-brand-color1);
}

/* The tree: clusters > nodepools > deployments */

.jd-Tree {
  padding: 4px 0;
}

.jd-NodeHeader {
  display: flex;
  align-items: center;
  gap: 4px;
  min-height: 22px;
  padding: 0 8px 0 4px;
  cursor: pointer;
  user-select: none;
  white-space: nowrap;
}

.jd-NodeHeader:hover {
  background: var(--jp-layout-color2);
}

.jd-Nodepool > .jd-NodeHeader {
  padding-left: 16px;
}

.jd-Caret {
  display: inline-flex;
  flex: 0 0 auto;
}

.jd-Caret svg {
  width: 16px;
  height: 16px;
}

.jd-NodeKind {
  flex: 0 0 auto;
  color: var(--jp-ui-font-color3);
  font-size: var(--jp-ui-font-size0);
  text-transform: uppercase;
}

.jd-NodeName,
.jd-DeploymentName,
.jd-DetailsName {
  font-weight: 600;
}

/* One line per row: long names shrink with an ellipsis (full text in the title). */
.jd-NodeHeader > span,
.jd-Deployment > span,
.jd-ModelHeader > span,
.jd-ModelVersion > span {
  min-width: 0;
  overflow: hidden;
  text-overflow: ellipsis;
}

.jd-Caret,
.jd-NodeKind,
.jd-Badge,
.jd-Tag,
.jd-VersionNumber,
.jd-ReplicaCount {
  flex-shrink: 0;
}

/*
 * Names and dates keep their width (any shrink at all would cut them with an
 * ellipsis); the secondary text after them gives way instead. A very long
 * name still stops at most of the row.
 */
.jd-NodeName,
.jd-DeploymentName,
.jd-VersionDate {
  flex-shrink: 0;
  max-width: 65%;
}

.jd-Cluster > .jd-Children > .jd-Leaf {
  padding-left: 36px;
}

.jd-Nodepool > .jd-Children > .jd-Leaf {
  padding-left: 48px;
}

.jd-Deployment {
  display: flex;
  align-items: center;
  gap: 6px;
  min-height: 24px;
  padding: 0 8px 0 40px;
  cursor: pointer;
  white-space: nowrap;
}

.jd-Deployment:hover {
  background: var(--jp-layout-color2);
}

.jd-Deployment.jd-mod-selected {
  background: var(--jp-layout-color2);
  box-shadow: inset 3px 0 0 var(--jp-brand-color1);
}

.jd-ReplicaCount {
  margin-left: auto;
  flex: 0 0 auto;
  font-variant-numeric: tabular-nums;
}

/* State badges: color by data-state, from the theme */

.jd-Badge {
  display: inline-block;
  flex: 0 0 auto;
  min-width: 56px;
  padding: 0 4px;
  border-radius: 8px;
  background: var(--jp-layout-color3);
  color: var(--jp-ui-font-color2);
  font-size: 9px;
  font-weight: 600;
  letter-spacing: 0.5px;
  line-height: 16px;
  text-align: center;
}

.jd-Badge[data-state='RUNNING'] {
  background: var(--jp-success-color1);
  color: var(--jp-ui-inverse-font-color1);
}

.jd-Badge[data-state='CREATING'],
.jd-Badge[data-state='STARTING'],
.jd-Badge[data-state='UPDATING'],
.jd-Badge[data-state='STOPPING'] {
  background: var(--jp-warn-color1);
  color: var(--jp-ui-inverse-font-color1);
}

.jd-Badge[data-state='FAILED'] {
  background: var(--jp-error-color1);
  color: var(--jp-ui-inverse-font-color1);
}

.jd-Badge[data-state='STOPPED'],
.jd-Badge[data-state='IDLE'] {
  background: var(--jp-layout-color3);
  color: var(--jp-ui-font-color2);
}

/* Details of the selected deployment */

.jd-Details {
  margin: 8px 8px 0;
  padding: 8px;
  border: var(--jp-border-width) solid var(--jp-border-color2);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color1);
}

.jd-Details[hidden] {
  display: none;
}

.jd-Details.jd-mod-busy {
  cursor: progress;
}

.jd-DetailsTitle {
  display: flex;
  align-items: center;
  justify-content: space-between;
  gap: 6px;
  margin-bottom: 6px;
  overflow-wrap: anywhere;
}

.jd-Rows {
  display: grid;
  grid-template-columns: max-content minmax(0, 1fr);
  gap: 2px 8px;
  margin: 0;
}

.jd-Rows dt {
  color: var(--jp-ui-font-color2);
}

.jd-Rows dd {
  margin: 0;
  white-space: pre-line;
  overflow-wrap: break-word;
  min-width: 0;
}

.jd-Actions {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin: 8px 0 4px;
}

.jd-Logs {
  max-height: 240px;
  min-height: 40px;
  margin: 0;
  padding: 4px 6px;
  overflow: auto;
  border: var(--jp-border-width) solid var(--jp-border-color2);
  background: var(--jp-layout-color2);
  color: var(--jp-content-font-color1);
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
  line-height: var(--jp-code-line-height);
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}

.jd-Logs.jd-mod-empty {
  color: var(--jp-ui-font-color2);
  font-family: var(--jp-ui-font-family);
  font-style: italic;
}

.jd-Logs .jd-Loading {
  padding: 0;
  font-family: var(--jp-ui-font-family);
}

/* Models and their versions */

.jd-Models,
.jd-ModelVersions {
  margin: 0;
  padding: 0;
  list-style: none;
}

.jd-Model {
  padding: 2px 0 4px;
}

.jd-ModelHeader {
  display: flex;
  align-items: baseline;
  gap: 6px;
  padding: 2px 8px 2px 12px;
  white-space: nowrap;
}

.jd-ModelUrl {
  overflow: hidden;
  text-overflow: ellipsis;
}

.jd-ModelVersion {
  display: flex;
  align-items: center;
  gap: 4px;
  min-height: 22px;
  padding: 0 4px 0 20px;
  white-space: nowrap;
}

.jd-ModelVersion:hover {
  background: var(--jp-layout-color2);
}

.jd-VersionNumber {
  flex: 0 0 auto;
  font-weight: 600;
  font-variant-numeric: tabular-nums;
}

.jd-Methods {
  overflow: hidden;
  color: var(--jp-ui-font-color2);
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-ui-font-size0);
  text-overflow: ellipsis;
}

.jd-Tag {
  flex: 0 0 auto;
  padding: 0 4px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: 8px;
  color: var(--jp-ui-font-color2);
  font-size: 9px;
  line-height: 14px;
  text-transform: uppercase;
}

.jd-DeleteVersionButton {
  margin-left: auto;
  opacity: 0.5;
}

/* Faint until the row is hovered or the button focused, so the list stays calm. */
.jd-ModelVersion:hover .jd-DeleteVersionButton,
.jd-DeleteVersionButton:focus-visible {
  opacity: 1;
}

.jd-DeleteVersionButton:hover:not(:disabled) {
  color: var(--jp-error-color1);
}
`,""]),r.d(o,{},{A:d})},"./node_modules/css-loader/dist/runtime/api.js"(e){e.exports=function(e){var o=[];return o.toString=function(){return this.map(function(o){var r="",t=void 0!==o[5];return o[4]&&(r+="@supports (".concat(o[4],") {")),o[2]&&(r+="@media ".concat(o[2]," {")),t&&(r+="@layer".concat(o[5].length>0?" ".concat(o[5]):""," {")),r+=e(o),t&&(r+="}"),o[2]&&(r+="}"),o[4]&&(r+="}"),r}).join("")},o.i=function(e,r,t,a,n){"string"==typeof e&&(e=[[null,e,void 0]]);var d={};if(t)for(var i=0;i<this.length;i++){var s=this[i][0];null!=s&&(d[s]=!0)}for(var l=0;l<e.length;l++){var p=[].concat(e[l]);t&&d[p[0]]||(void 0!==n&&(void 0===p[5]||(p[1]="@layer".concat(p[5].length>0?" ".concat(p[5]):""," {").concat(p[1],"}")),p[5]=n),r&&(p[2]&&(p[1]="@media ".concat(p[2]," {").concat(p[1],"}")),p[2]=r),a&&(p[4]?(p[1]="@supports (".concat(p[4],") {").concat(p[1],"}"),p[4]=a):p[4]="".concat(a)),o.push(p))}},o}},"./node_modules/css-loader/dist/runtime/noSourceMaps.js"(e){e.exports=function(e){return e[1]}},"./node_modules/style-loader/dist/runtime/injectStylesIntoStyleTag.js"(e){var o=[];function r(e){for(var r=-1,t=0;t<o.length;t++)if(o[t].identifier===e){r=t;break}return r}function t(e,t){for(var a={},n=[],d=0;d<e.length;d++){var i=e[d],s=t.base?i[0]+t.base:i[0],l=a[s]||0,p="".concat(s," ").concat(l);a[s]=l+1;var c=r(p),u={css:i[1],media:i[2],sourceMap:i[3],supports:i[4],layer:i[5]};if(-1!==c)o[c].references++,o[c].updater(u);else{var j=function(e,o){var r=o.domAPI(o);return r.update(e),function(o){o?(o.css!==e.css||o.media!==e.media||o.sourceMap!==e.sourceMap||o.supports!==e.supports||o.layer!==e.layer)&&r.update(e=o):r.remove()}}(u,t);t.byIndex=d,o.splice(d,0,{identifier:p,updater:j,references:1})}n.push(p)}return n}e.exports=function(e,a){var n=t(e=e||[],a=a||{});return function(e){e=e||[];for(var d=0;d<n.length;d++){var i=r(n[d]);o[i].references--}for(var s=t(e,a),l=0;l<n.length;l++){var p=r(n[l]);0===o[p].references&&(o[p].updater(),o.splice(p,1))}n=s}}},"./node_modules/style-loader/dist/runtime/insertBySelector.js"(e){var o={};e.exports=function(e,r){var t=function(e){if(void 0===o[e]){var r=document.querySelector(e);if(window.HTMLIFrameElement&&r instanceof window.HTMLIFrameElement)try{r=r.contentDocument.head}catch(e){r=null}o[e]=r}return o[e]}(e);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(r)}},"./node_modules/style-loader/dist/runtime/insertStyleElement.js"(e){e.exports=function(e){var o=document.createElement("style");return e.setAttributes(o,e.attributes),e.insert(o,e.options),o}},"./node_modules/style-loader/dist/runtime/setAttributesWithoutAttributes.js"(e,o,r){e.exports=function(e){var o=r.nc;o&&e.setAttribute("nonce",o)}},"./node_modules/style-loader/dist/runtime/styleDomAPI.js"(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var o=e.insertStyleElement(e);return{update:function(r){var t,a,n;t="",r.supports&&(t+="@supports (".concat(r.supports,") {")),r.media&&(t+="@media ".concat(r.media," {")),(a=void 0!==r.layer)&&(t+="@layer".concat(r.layer.length>0?" ".concat(r.layer):""," {")),t+=r.css,a&&(t+="}"),r.media&&(t+="}"),r.supports&&(t+="}"),(n=r.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),e.styleTagTransform(t,o,e.options)},remove:function(){var e;null===(e=o).parentNode||e.parentNode.removeChild(e)}}}},"./node_modules/style-loader/dist/runtime/styleTagTransform.js"(e){e.exports=function(e,o){if(o.styleSheet)o.styleSheet.cssText=e;else{for(;o.firstChild;)o.removeChild(o.firstChild);o.appendChild(document.createTextNode(e))}}},"./style/index.js"(e,o,r){var t=r("./node_modules/style-loader/dist/runtime/injectStylesIntoStyleTag.js"),a=r.n(t),n=r("./node_modules/style-loader/dist/runtime/styleDomAPI.js"),d=r.n(n),i=r("./node_modules/style-loader/dist/runtime/insertBySelector.js"),s=r.n(i),l=r("./node_modules/style-loader/dist/runtime/setAttributesWithoutAttributes.js"),p=r.n(l),c=r("./node_modules/style-loader/dist/runtime/insertStyleElement.js"),u=r.n(c),j=r("./node_modules/style-loader/dist/runtime/styleTagTransform.js"),f=r.n(j),m=r("./node_modules/css-loader/dist/cjs.js!./style/base.css"),v={};v.styleTagTransform=f(),v.setAttributes=p(),v.insert=s().bind(null,"head"),v.domAPI=d(),v.insertStyleElement=u(),a()(m.A,v),m.A&&m.A.locals&&m.A.locals}}]);