// Readiness probe of the Moodle archive worker.
//
// Installed with addInitScript, so it runs in the report's document before any of the page's own
// scripts: it sees every <script> load from the start and needs no fixed delay. Python awaits
// window.__moodleArchiveProbe.wait(timeoutMs); the answer carries the progress markers.
//
// The page is ready when each of these is settled:
//   page      the load event fired (or nothing more came for stallGraceMs: a hanging resource)
//   mathjax   no .filter_mathjaxloader_equation on the page; or MathJax 2 ran a Hub queue
//             callback after everything queued before it; or MathJax 3/4 resolved
//             MathJax.startup.promise and the equations hold its output; or an unknown MathJax
//             version had unknownMathJaxMs; or MathJax never arrived (404, offline CDN, hanging
//             script, Moodle loader never completed): "not found", render without it
//   geogebra  no GGBApplet; or every .GeoGebraFrame got class "jsloaded" and then did not
//             change for geogebraQuietMs
// then the web fonts in use have loaded.
(function (config) {
  'use strict';
  if (window.top !== window || window.__moodleArchiveProbe) {
    return;
  }
  // The page may replace globals (polyfills); keep the originals.
  const setTimer = window.setTimeout.bind(window);
  const clearTimer = window.clearTimeout.bind(window);
  const NativePromise = window.Promise;
  const NativeObserver = window.MutationObserver;
  const perf = window.performance;
  const some = (list, test) => Array.prototype.some.call(list, test);
  const every = (list, test) => Array.prototype.every.call(list, test);

  const startedAt = perf.now();
  const elapsed = () => perf.now() - startedAt;
  const markers = [];
  const preventedRedirects = [];
  const mark = (name) => markers.push(name + ' @' + Math.round(elapsed()) + 'ms');
  const stalled = () => elapsed() >= config.stallGraceMs;

  // --- Login redirects: cancel them before they leave the page (Navigation API). ---------------
  if (config.preventLoginRedirect && window.navigation) {
    window.navigation.addEventListener('navigate', (event) => {
      let url;
      try {
        url = new URL(event.destination.url);
      } catch (e) {
        return;
      }
      if (event.cancelable && /\/login\/[^/]*\.php$/.test(url.pathname)) {
        event.preventDefault();
        preventedRedirects.push(url.origin + url.pathname);
        mark('login-redirect-prevented');
      }
    });
  }

  // --- Which scripts are still loading: load/error of every element, seen while capturing. -----
  const settledScripts = new WeakSet();
  const onResourceSettled = (event) => {
    const target = event.target;
    if (target && target.tagName === 'SCRIPT') {
      settledScripts.add(target);
      step();
    }
  };
  window.addEventListener('load', onResourceSettled, true);
  window.addEventListener('error', onResourceSettled, true);
  document.addEventListener('readystatechange', () => step());

  const isClassicOrModule = (script) => {
    const type = (script.type || '').toLowerCase();
    const runs = type === '' || type === 'module' || type.indexOf('javascript') !== -1;
    return runs && !script.noModule;
  };
  const mathJaxScriptLoading = () => some(document.scripts, (script) =>
    script.src && /mathjax/i.test(script.src) && isClassicOrModule(script)
      && !settledScripts.has(script));
  // Moodle's own bookkeeping (M.util.pending_js). Its page init runs inside
  // require(['core/first'], ...), which registers 'filter_mathjaxloader/loader' as pending and
  // calls the loader's configure(); 'core/first' stays pending until that callback has run.
  const moodleMayStillLoadMathJax = () => {
    const moodle = window.M;
    const pending = moodle && moodle.util && moodle.util.pending_js;
    return Array.isArray(pending)
      && pending.some((id) => id === 'core/first' || /mathjax/i.test(String(id)));
  };
  const equations = () => document.getElementsByClassName('filter_mathjaxloader_equation');
  const parsed = () => document.readyState !== 'loading';
  const loaded = () => document.readyState === 'complete';

  // --- Components ---------------------------------------------------------------------------------
  const components = {
    page: {done: false, busy: false},
    mathjax: {done: false, busy: false},
    geogebra: {done: false, busy: false},
  };
  let resolveSettled;
  const settled = new NativePromise((resolve) => {
    resolveSettled = resolve;
  });

  const finish = (name, marker) => {
    const component = components[name];
    if (component.done) {
      return;
    }
    component.done = true;
    mark(marker);
    if (every(Object.keys(components), (key) => components[key].done)) {
      resolveSettled();
    }
  };

  const stepPage = () => {
    if (loaded()) {
      finish('page', 'page-loaded');
    } else if (stalled()) {
      finish('page', 'page-load-incomplete');
    }
  };

  const stepMathJax = () => {
    const state = components.mathjax;
    if (!parsed()) {
      return;
    }
    if (equations().length === 0) {
      finish('mathjax', 'mathjax-no-formulas');
      return;
    }
    const mathJax = window.MathJax;
    const version = mathJax && typeof mathJax.version === 'string' ? mathJax.version : '';
    if (!version) {
      // Only a configuration object, or nothing yet. Could it still come?
      const mayArrive = !loaded() || mathJaxScriptLoading() || moodleMayStillLoadMathJax();
      if (!mayArrive || stalled()) {
        finish('mathjax', 'mathjax-not-found');
      }
      return;
    }
    state.busy = true;
    mark('mathjax-found-' + version);
    const major = version.split('.')[0];
    if (major === '2') {
      waitForMathJax2(mathJax);
    } else if (major === '3' || major === '4') {
      waitForMathJaxStartup(mathJax, major);
    } else {
      setTimer(() => finish('mathjax', 'mathjax-unknown-version'), config.unknownMathJaxMs);
    }
  };

  const waitForMathJax2 = (mathJax) => {
    const hub = mathJax.Hub;
    if (!hub || typeof hub.Queue !== 'function') {
      setTimer(() => finish('mathjax', 'mathjax-2-without-hub'), config.unknownMathJaxMs);
      return;
    }
    hub.processSectionDelay = 0;
    const drain = () => hub.Queue(() => {
      // Runs after everything queued before it; requeue while others queued work behind us.
      const queue = hub.queue;
      if (queue && queue.queue && queue.queue.length > 0) {
        drain();
      } else {
        finish('mathjax', 'mathjax-2-typeset');
      }
    });
    drain();
  };

  const hasMathJaxOutput = (element) => element.querySelector('mjx-container') !== null;

  const waitForMathJaxStartup = (mathJax, major) => {
    const afterTypeset = () => {
      const deadline = elapsed() + config.mathJaxSettleMs;
      const check = () => {
        if (every(equations(), hasMathJaxOutput)) {
          finish('mathjax', 'mathjax-' + major + '-typeset');
        } else if (elapsed() >= deadline) {
          finish('mathjax', 'mathjax-' + major + '-typeset-partly');
        } else {
          setTimer(check, config.pollMs);
        }
      };
      check();
    };
    const awaitStartup = () => {
      const startup = mathJax.startup;
      const promise = startup && startup.promise;
      if (!promise || typeof promise.then !== 'function') {
        setTimer(awaitStartup, config.pollMs);  // the startup component is still being set up
        return;
      }
      promise.then(() => {
        if (mathJax.startup.promise !== promise) {
          awaitStartup();  // typesetting was chained on meanwhile
        } else {
          afterTypeset();
        }
      }, () => finish('mathjax', 'mathjax-' + major + '-failed'));
    };
    awaitStartup();
  };

  const stepGeoGebra = () => {
    const state = components.geogebra;
    if (!parsed()) {
      return;
    }
    if (typeof window.GGBApplet === 'undefined') {
      if (loaded() || stalled()) {
        finish('geogebra', 'geogebra-not-found');
      }
      return;
    }
    const frames = document.getElementsByClassName('GeoGebraFrame');
    if (frames.length === 0) {
      if (stalled()) {
        finish('geogebra', 'geogebra-no-applets');
      }
      return;
    }
    if (!every(frames, (frame) => frame.classList.contains('jsloaded'))) {
      return;
    }
    state.busy = true;
    mark('geogebra-loaded');
    let lastChange = elapsed();
    const observer = new NativeObserver(() => {
      lastChange = elapsed();
    });
    Array.prototype.forEach.call(frames, (frame) => observer.observe(frame, {childList: true, subtree: true}));
    const check = () => {
      const quietFor = elapsed() - lastChange;
      if (quietFor >= config.geogebraQuietMs) {
        observer.disconnect();
        finish('geogebra', 'geogebra-ready');
      } else {
        setTimer(check, config.geogebraQuietMs - quietFor);
      }
    };
    setTimer(check, config.geogebraQuietMs);
  };

  const steps = {page: stepPage, mathjax: stepMathJax, geogebra: stepGeoGebra};
  function step() {
    Object.keys(steps).forEach((name) => {
      const component = components[name];
      if (!component.done && !component.busy) {
        steps[name]();
      }
    });
  }
  let allSettled = false;
  settled.then(() => {
    allSettled = true;
  });
  const poll = () => {
    if (!allSettled) {
      step();
      setTimer(poll, config.pollMs);
    }
  };
  poll();

  // Fonts requested during the last layout (icon fonts, MathJax fonts) before printing.
  const ready = settled.then(() => {
    const fonts = document.fonts && document.fonts.ready;
    if (!fonts) {
      return undefined;
    }
    return NativePromise.race([
      fonts.then(() => mark('fonts-loaded')),
      new NativePromise((resolve) => setTimer(resolve, config.fontsGraceMs)),
    ]);
  });

  const snapshot = (isReady) => {
    const pending = Object.keys(components).filter((name) => !components[name].done);
    return {
      ready: isReady,
      markers: markers.slice(),
      pending: pending,
      preventedRedirects: preventedRedirects.slice(),
    };
  };

  Object.defineProperty(window, '__moodleArchiveProbe', {
    enumerable: false,
    value: Object.freeze({
      wait(timeoutMs) {
        return new NativePromise((resolve) => {
          const timer = setTimer(() => resolve(snapshot(false)), timeoutMs);
          ready.then(() => {
            clearTimer(timer);
            resolve(snapshot(true));
          });
        });
      },
      snapshot() {
        return snapshot(allSettled);
      },
    }),
  });
})
