
(function(){
var GP = window.GP = {timing: []};
GP.decode = function(g){
  if (!g || !g.enc) return g;
  var c = g.c, n = c.length / 2, xy = new Array(n), x = 0, y = 0, k;
  for (k = 0; k < n; k++){ x += c[2 * k]; y += c[2 * k + 1]; xy[k] = [x / g.s, y / g.s]; }
  var o = g.o, out = [], parts = o[o.length - 1], rings = o.length > 2 ? o[o.length - 2] : null, geo = o[0];
  // offsets: mp → [ring→coord, polygon→ring, geometry→polygon]; ml → [line→coord, geometry→line]
  for (var gi = 0; gi + 1 < parts.length; gi++){
    var items = [];
    for (var pi = parts[gi]; pi < parts[gi + 1]; pi++){
      if (rings){ var poly = [];
        for (var ri = rings[pi]; ri < rings[pi + 1]; ri++){ poly.push(xy.slice(geo[ri], geo[ri + 1])); }
        items.push(poly);
      } else { items.push(xy.slice(geo[pi], geo[pi + 1])); }
    }
    out.push({type: rings ? 'MultiPolygon' : 'MultiLineString', coordinates: items});
  }
  return out;
};
GP.load = function(ds){
  if (ds._id && !ds._ok){ var el = document.getElementById(ds._id); var d = JSON.parse(el.textContent);
    for (var k in d) ds[k] = d[k]; ds._ok = true; }
  if (ds.g && ds.g.enc) ds.g = GP.decode(ds.g);
  return ds;
};
GP.feats = function(ds){
  GP.load(ds);
  if(!ds._fc){ ds._fc = {type:'FeatureCollection', features: ds.g.map(function(g,i){
    return {type:'Feature', geometry:g, properties:{i:i}}; })}; }
  return ds._fc;
};
GP.popup = function(ds, i){
  var r = ds.p[i], h = '<table class="gp-pop"><caption>' + (ds.t[i]||'') + '</caption>';
  for (var k = 0; k < ds.f.length; k++){ var v = r[k]; if (ds.d && ds.d[k] && v !== null) v = ds.d[k][v];
    if (v === null || v === undefined || v === '') continue;
    h += '<tr><th>' + ds.f[k] + '</th><td>' + v + '</td></tr>'; }
  return h + '</table>';
};
GP.lazy = function(build){
  var g = L.featureGroup(), built = false;
  g.on('add', function(){ if(!built){ built = true; var t = performance.now(); build(g);
    GP.timing.push(Math.round(performance.now() - t)); } });
  g.gpBuilt = function(){ return built; };
  return g;
};
GP.bind = function(l, ds, i, o){
  if (o.tooltip !== false && ds.t) l.bindTooltip(function(){ return ds.t[i]; }, {sticky: true});
  if (o.popup !== false && ds.p) l.bindPopup(function(){ return GP.popup(ds, i); }, {maxWidth: 380});
};
GP.tag = function(ds, build){ var g = GP.lazy(build); g.gpData = ds; return g; };
GP.index = function(l){ return l.feature ? l.feature.properties.i : l.gpI; };
GP.delegate = function(layer, ds, o){
  // one tooltip and one popup per layer, not one per feature (20,000 compounds stay fast)
  if (o.interactive === false) return;
  var tip = L.tooltip({sticky: true}), pop = L.popup({maxWidth: 380});
  if (o.tooltip !== false && ds.t){
    layer.on('mouseover', function(e){ var i = GP.index(e.layer);
      tip.setContent(ds.t[i]).setLatLng(e.latlng); e.layer._map && tip.openOn(e.layer._map); });
    layer.on('mousemove', function(e){ tip.setLatLng(e.latlng); });
    layer.on('mouseout', function(e){ e.layer._map && e.layer._map.closeTooltip(tip); });
  }
  if (o.popup !== false && ds.p){
    layer.on('click', function(e){ var i = GP.index(e.layer);
      pop.setContent(GP.popup(ds, i)).setLatLng(e.latlng).openOn(e.layer._map); });
  }
};
GP.shapes = function(ds, o){
  return GP.tag(ds, function(g){
    var fill = o.fill !== false;
    var geo = L.geoJSON(GP.feats(ds), {
      smoothFactor: o.smooth || 1.0,
      interactive: o.interactive !== false,
      style: function(f){ var i = f.properties.i, c = o.cat ? o.colors[o.cat[i]] : o.color;
        return {color: o.stroke || c, weight: o.weight === undefined ? 1 : o.weight, opacity: o.opacity || 0.9,
                fillColor: c, fillOpacity: fill ? (o.fillOpacity === undefined ? 0.6 : o.fillOpacity) : 0,
                fill: fill, dashArray: o.dash || null}; },
      onEachFeature: o.labels ? function(f, l){
        l.bindTooltip(o.labels[f.properties.i], {permanent: true, direction: 'center', className: 'gp-line-label'});
      } : null
    });
    GP.delegate(geo, ds, o);
    g.addLayer(geo);
  });
};
GP.points = function(ds, o){
  return GP.tag(ds, function(g){
    GP.load(ds); var icons = {};
    ds.g.forEach(function(xy, i){
      var c = o.cat ? o.cat[i] : 0, ll = [xy[1], xy[0]], m;
      if (o.canvas){
        m = L.circleMarker(ll, {radius: o.radius || 5, color: '#fff', weight: 1, fillColor: o.colors[c], fillOpacity: 0.95});
      } else {
        if (!icons[c]) icons[c] = L.divIcon({html: o.icons[c], className: 'gp-icon', iconSize: [o.size, o.size],
                                             iconAnchor: [o.size / 2, o.size / 2]});
        m = L.marker(ll, {icon: icons[c], keyboard: false});
      }
      m.gpI = i; g.addLayer(m);
    });
    GP.delegate(g, ds, o);
  });
};
GP.labels = function(ds, o){
  // only the labels inside the view are made, and only from labelMinZoom on (thousands of bundles stay fast)
  var g = L.featureGroup(), shown = {};
  function update(){
    var map = g._map; if (!map) return; GP.load(ds);
    if (map.getZoom() < (o.minZoom || 0)){ g.clearLayers(); shown = {}; return; }
    var b = map.getBounds().pad(0.2);
    ds.g.forEach(function(xy, i){
      var inside = b.contains([xy[1], xy[0]]);
      if (inside && !shown[i]){ shown[i] = L.marker([xy[1], xy[0]], {interactive: false, keyboard: false,
          icon: L.divIcon({className: 'gp-label', html: ds.t[i], iconSize: null})}); g.addLayer(shown[i]); }
      else if (!inside && shown[i]){ g.removeLayer(shown[i]); delete shown[i]; }
    });
  }
  g.on('add', function(){ g._map.on('moveend zoomend', update); update(); });
  g.on('remove', function(){ if (g._map) g._map.off('moveend zoomend', update); });
  g.gpCount = function(){ return GP.load(ds).g.length; };
  return g;
};
GP.count = function(layer){
  var n = 0;
  if (layer.eachLayer){ layer.eachLayer(function(l){ n += l.eachLayer ? GP.count(l) : 1; }); } else { n = 1; }
  return n;
};
GP.controls = function(map, cfg){
  GP.map = map; GP.cfg = cfg;
  var cont = map.getContainer();
  if (cfg.title){ var t = L.DomUtil.create('div', 'gp-title', cont); t.innerHTML = cfg.title; }
  L.control.scale({imperial: false, maxWidth: 160, position: 'bottomleft'}).addTo(map);
  var North = L.Control.extend({options: {position: 'bottomleft'}, onAdd: function(){
    var d = L.DomUtil.create('div', 'gp-north'); d.innerHTML = cfg.north; return d; }});
  new North().addTo(map);
  // full screen (Fullscreen API, with a CSS fallback)
  var Full = L.Control.extend({options: {position: 'topleft'}, onAdd: function(){
    var d = L.DomUtil.create('div', 'leaflet-bar'), a = L.DomUtil.create('a', 'gp-btn gp-fullscreen', d);
    a.innerHTML = '<svg width="16" height="16" viewBox="0 0 16 16" style="vertical-align:middle"><path d="M1 5V1h4M11 1h4v4M15 11v4h-4M5 15H1v-4" fill="none" stroke="#333" stroke-width="2"/></svg>'; a.title = cfg.text.fullscreen; a.href = '#'; a.setAttribute('role', 'button');
    L.DomEvent.on(a, 'click', function(e){ L.DomEvent.stop(e);
      if (document.fullscreenElement){ document.exitFullscreen(); }
      else if (cont.requestFullscreen){ cont.requestFullscreen().catch(function(){ cont.classList.toggle('gp-pseudo-full'); map.invalidateSize(); }); }
      else { cont.classList.toggle('gp-pseudo-full'); map.invalidateSize(); } });
    document.addEventListener('fullscreenchange', function(){ map.invalidateSize(); });
    return d; }});
  new Full().addTo(map);
  // measure distance and area
  var Measure = L.Control.extend({options: {position: 'topleft'}, onAdd: function(){
    var d = L.DomUtil.create('div', 'leaflet-bar'), a = L.DomUtil.create('a', 'gp-btn gp-measure', d);
    a.innerHTML = '<svg width="18" height="18" viewBox="0 0 18 18" style="vertical-align:middle"><path d="M2 13 13 2l3 3L5 16z" fill="none" stroke="#333" stroke-width="1.6"/><path d="M5 10l1.5 1.5M7.5 7.5 9 9M10 5l1.5 1.5" stroke="#333" stroke-width="1.4"/></svg>'; a.title = cfg.text.measure + ' — ' + cfg.text.measure_hint; a.href = '#';
    var out = L.DomUtil.create('div', 'gp-measure-out', cont.querySelector('.leaflet-bottom.leaflet-left') || d);
    var on = false, pts = [], grp = L.layerGroup().addTo(map), dbl = map.doubleClickZoom.enabled();
    function fmt(m){ return m >= 1000 ? (m / 1000).toFixed(2) + ' km' : m.toFixed(0) + ' m'; }
    function area(ll){ if (ll.length < 3) return 0; var R = 6378137, s = 0, lat0 = ll[0].lat * Math.PI / 180;
      for (var k = 0; k < ll.length; k++){ var p = ll[k], q = ll[(k + 1) % ll.length];
        s += (p.lng * Math.cos(lat0)) * q.lat - (q.lng * Math.cos(lat0)) * p.lat; }
      return Math.abs(s) / 2 * Math.pow(Math.PI / 180 * R, 2); }
    function draw(){ grp.clearLayers(); if (!pts.length) return;
      L.polyline(pts, {color: '#b2182b', weight: 2, dashArray: '6 4', interactive: false}).addTo(grp);
      if (pts.length > 2) L.polygon(pts, {color: '#b2182b', weight: 0, fillOpacity: 0.1, interactive: false}).addTo(grp);
      pts.forEach(function(p){ L.circleMarker(p, {radius: 3, color: '#b2182b', interactive: false}).addTo(grp); });
      var dsum = 0; for (var k = 1; k < pts.length; k++) dsum += map.distance(pts[k - 1], pts[k]);
      var ar = area(pts);
      out.innerHTML = cfg.text.distance + ' ' + fmt(dsum) + (ar > 0 ? ' · ' + cfg.text.area + ' ' +
        (ar >= 1e6 ? (ar / 1e6).toFixed(2) + ' km²' : ar.toFixed(0) + ' m²') : '') +
        '<a class="gp-measure-clear">' + cfg.text.measure_clear + '</a>';
      var c = out.querySelector('.gp-measure-clear');
      L.DomEvent.on(c, 'click', function(e){ L.DomEvent.stop(e); pts = []; grp.clearLayers(); out.style.display = 'none'; }); }
    function click(e){ pts.push(e.latlng); out.style.display = 'block'; draw(); }
    function finish(){ on = false; a.classList.remove('gp-on'); map.off('click', click); map.off('dblclick', finish);
      cont.style.cursor = ''; if (dbl) setTimeout(function(){ map.doubleClickZoom.enable(); }, 0); }
    L.DomEvent.on(a, 'click', function(e){ L.DomEvent.stop(e);
      if (on){ finish(); return; }
      on = true; pts = []; grp.clearLayers(); a.classList.add('gp-on'); cont.style.cursor = 'crosshair';
      map.doubleClickZoom.disable(); map.on('click', click); map.on('dblclick', finish); });
    return d; }});
  new Measure().addTo(map);
  // categorical legend: one section per overlay, shown while the overlay is on
  if (cfg.legend && cfg.legend.length){
    var Legend = L.Control.extend({options: {position: 'bottomright'}, onAdd: function(){
      var d = L.DomUtil.create('div', 'gp-legend');
      d.innerHTML = '<h4>' + cfg.text.legend + '</h4>';
      cfg.legend.forEach(function(s){ var sec = L.DomUtil.create('div', 'gp-sec', d);
        sec.innerHTML = s.html; s.el = sec; sec.style.display = map.hasLayer(s.layer) ? '' : 'none'; });
      L.DomEvent.disableClickPropagation(d); L.DomEvent.disableScrollPropagation(d);
      return d; }});
    new Legend().addTo(map);
    map.on('overlayadd overlayremove', function(){
      cfg.legend.forEach(function(s){ s.el.style.display = map.hasLayer(s.layer) ? '' : 'none'; }); });
  }
  function zoomClass(){ if (map.getZoom() < cfg.labelMinZoom) cont.classList.add('gp-lowzoom'); else cont.classList.remove('gp-lowzoom'); }
  map.on('zoomend', zoomClass);
  if (cfg.bounds) map.fitBounds(cfg.bounds, {padding: [20, 20]});
  zoomClass();
  if (cfg.order){ map.on('overlayadd', function(){ cfg.order.forEach(function(l){ if (map.hasLayer(l) && l.bringToFront) l.bringToFront(); }); }); }
  window.GP_READY = true;
};
})();
