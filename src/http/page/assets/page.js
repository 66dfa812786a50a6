// The Social Accounts page's script: plain JavaScript, embedded in the binary and served
// from the engine's own origin (the page's Content-Security-Policy allows no inline
// script). Every change is a POST carrying the page's CSRF token; the list is re-read
// from the server after each change and on each event of the pen name's stream.
(function () {
  'use strict';
  var page = location.pathname.replace(/\/+$/, '');
  var csrf = document.body.getAttribute('data-csrf');
  var MESSAGE_TYPE = 'social-studio-connect';
  var EVENT_KINDS = ['connection_status', 'post_state', 'expiring_soon', 'recovered', 'grant_renewed', 'targets_chosen', 'gap'];

  function $(selector, root) { return (root || document).querySelector(selector); }
  function names(platform) {
    var option = $('#connect-platform option[value="' + platform + '"]');
    var card = $('#platform-' + platform + ' h3');
    return card ? card.textContent : (option ? option.textContent : platform);
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }
  function show(target, nodes) {
    target.textContent = '';
    nodes.forEach(function (n) { target.appendChild(n); });
  }
  function notice(nodes) { show($('#notice'), nodes); }
  function resultOf(platform) { return $('[data-result="' + platform + '"]'); }
  // Looked up when written: an event may have re-read the list since the click.
  function say(platform, nodes) {
    var result = resultOf(platform);
    if (result) { show(result, nodes); }
    return result;
  }

  function post(path, body) {
    return fetch(page + path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body || {})
    }).then(function (answer) {
      return answer.json().catch(function () { return {}; }).then(function (json) {
        return { ok: answer.ok, status: answer.status, body: json };
      });
    });
  }
  function errorLines(error) {
    var lines = [el('p', { 'class': 'error' }, [error.message || 'Something went wrong.'])];
    var reason = error.reason || {};
    if (reason.platform_message) { lines.push(el('p', {}, [reason.platform_message])); }
    if (error.remedy) { lines.push(el('p', {}, [error.remedy])); }
    return lines;
  }

  // ---- the list, re-read from the server ----
  var refreshing = null;
  function refresh() {
    if (refreshing) { return; }
    refreshing = setTimeout(function () {
      refreshing = null;
      fetch(page, { credentials: 'same-origin' }).then(function (answer) {
        if (!answer.ok) { throw new Error('page ' + answer.status); }
        return answer.text();
      }).then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html').getElementById('live');
        var old = $('#live');
        if (!fresh || !old) { return; }
        // What a button said stays, unless the connection has moved on since.
        var kept = {};
        Array.prototype.forEach.call(old.querySelectorAll('[data-result]'), function (r) {
          var platform = r.getAttribute('data-result');
          var before = old.querySelector('#platform-' + platform);
          var after = fresh.querySelector('#platform-' + platform);
          if (before && after && before.getAttribute('data-status') === after.getAttribute('data-status')) {
            kept[platform] = Array.prototype.slice.call(r.childNodes);
          }
        });
        var focused = document.activeElement;
        var focusKey = focused && focused.getAttribute && focused.getAttribute('data-action')
          ? [focused.getAttribute('data-action'), focused.getAttribute('data-platform')] : null;
        var focusInBanner = focused && focused.closest && focused.closest('#banners');
        var focusForm = focused && focused.closest && focused.closest('form[data-targets]');
        var focusTick = focusForm && focused.name === 'target'
          ? [focusForm.getAttribute('data-targets'), focused.value] : null;
        old.parentNode.replaceChild(document.adoptNode(fresh), old);
        keepTicks();
        pictures();
        Object.keys(kept).forEach(function (platform) {
          var r = resultOf(platform);
          if (r) { show(r, kept[platform]); }
        });
        var tick = focusTick && ticksOf(focusTick[0]).filter(function (box) { return box.value === focusTick[1]; })[0];
        if (tick) {
          tick.focus();
        } else if (focusKey) {
          var again = $((focusInBanner ? '#banners ' : '#accounts ') + '[data-action="' + focusKey[0] + '"][data-platform="' + focusKey[1] + '"]')
            || $('[data-platform="' + focusKey[1] + '"] [data-action]');
          if (again) { again.focus(); }
        }
        document.body.setAttribute('data-refreshed', String(Date.now()));
      }).catch(function () { /* the next event tries again */ });
    }, 100);
  }

  // ---- connect: a popup on the platform's consent page, or this tab ----
  function connect(platform, replace) {
    var name = names(platform);
    // Opened at once, inside the click, or the popup blocker stops it; pointed at the
    // consent page when the engine answers.
    var popup = window.open('', 'social-studio-connect', 'popup,width=600,height=720');
    notice([el('p', {}, ['Opening ' + name + '…'])]);
    post('/connect/' + platform, { replace: !!replace }).then(function (answer) {
      if (!answer.ok) {
        if (popup) { popup.close(); }
        notice(errorLines(answer.body.error || {}));
        return;
      }
      var url = answer.body.authorize_url;
      if (popup && !popup.closed) {
        popup.location.href = url;
        notice([el('p', {}, ['Finish connecting ' + name + ' in the window that opened.'])]);
        document.body.setAttribute('data-popup', 'opened');
        return;
      }
      document.body.setAttribute('data-popup', 'blocked');
      notice([
        el('p', { 'class': 'error' }, ['Your browser blocked the window for ' + name + '.']),
        el('p', {}, [
          el('a', { href: url, id: 'same-tab-link' }, ['Continue connecting ' + name + ' in this tab']),
          ' — you will come back here when it is done.'
        ])
      ]);
      $('#same-tab-link').focus();
    }, function () {
      if (popup) { popup.close(); }
      notice([el('p', { 'class': 'error' }, ['The service did not answer. Try again.'])]);
    });
  }

  window.addEventListener('message', function (event) {
    if (event.origin !== location.origin) { return; }
    var data = event.data || {};
    if (data.type !== MESSAGE_TYPE || data.pen_name !== document.body.getAttribute('data-pen')) { return; }
    var name = data.platform ? names(data.platform) : 'The account';
    if (data.ok) {
      var handle = data.account && data.account.handle ? ' as ' + data.account.handle : '';
      notice([el('p', { 'class': 'ok' }, [name + ' is connected' + handle + '.'])]);
    } else {
      var lines = errorLines(data.error || {});
      if (data.error && data.error.code === 'wrong_account' && data.platform) {
        lines.push(el('button', { type: 'button', 'class': 'danger', 'data-action': 'replace', 'data-platform': data.platform },
          ['Replace with the new account']));
      }
      notice(lines);
    }
    refresh();
  });

  // ---- disconnect, check, test post ----
  function disconnect(platform, confirmed) {
    var name = names(platform);
    post('/disconnect/' + platform, { confirm: !!confirmed }).then(function (answer) {
      var error = answer.body.error || {};
      if (!confirmed && error.code === 'confirmation_required') {
        var n = error.scheduled_posts_affected || 0;
        var what = n === 0 ? 'No scheduled posts will be affected.'
          : (n === 1 ? '1 scheduled post will fail.' : n + ' scheduled posts will fail.');
        var result = say(platform, [el('div', { 'class': 'confirm' }, [
          el('p', { 'data-affected': String(n) }, ['Disconnect ' + name + '? ' + what]),
          el('button', { type: 'button', 'class': 'danger', 'data-action': 'confirm-disconnect', 'data-platform': platform }, ['Disconnect ' + name]),
          el('button', { type: 'button', 'data-action': 'cancel', 'data-platform': platform }, ['Cancel'])
        ])]);
        if (result) { $('[data-action="confirm-disconnect"]', result).focus(); }
        return;
      }
      if (!answer.ok) { say(platform, errorLines(error)); return; }
      var failed = answer.body.disconnected ? answer.body.disconnected.posts_failed : 0;
      notice([el('p', { 'class': 'ok' }, [name + ' is disconnected' + (failed ? '; ' + failed + ' scheduled posts failed.' : '.')])]);
      say(platform, []);
      refresh();
    });
  }

  function verify(platform, testPost) {
    var name = names(platform);
    say(platform, [el('p', {}, [testPost ? 'Sending a test post…' : 'Checking…'])]);
    var body = testPost ? { test_post: 'A test post from Social Studio (' + new Date().toISOString() + ')' } : {};
    post('/verify/' + platform, body).then(function (answer) {
      if (!answer.ok) { say(platform, errorLines(answer.body.error || {})); refresh(); return; }
      var view = answer.body.verified || {};
      var posted = view.test_post;
      say(platform, [el('p', { 'class': 'ok' }, [
        posted ? 'The test post was ' + posted.state + ' on ' + name + '.' : name + ' works: the connection is ' + view.connection.status + '.'
      ])]);
      refresh();
    });
  }

  document.addEventListener('click', function (event) {
    var button = event.target.closest && event.target.closest('[data-action]');
    if (!button) { return; }
    var platform = button.getAttribute('data-platform');
    switch (button.getAttribute('data-action')) {
      case 'connect': connect(platform, false); break;
      case 'replace': connect(platform, true); break;
      case 'disconnect': disconnect(platform, false); break;
      case 'confirm-disconnect': disconnect(platform, true); break;
      case 'cancel': show(resultOf(platform), []); break;
      case 'verify': verify(platform, false); break;
      case 'test-post': verify(platform, true); break;
    }
  });

  // ---- pictures: one that does not load is hidden, and the account's initials shown ----
  function pictureFailed(img) {
    var initials = img.nextElementSibling;
    if (initials && initials.classList.contains('initials')) { initials.hidden = false; }
    img.hidden = true;
  }
  // Those that failed before this script ran; later ones through the listener below.
  function pictures() {
    Array.prototype.forEach.call(document.querySelectorAll('img[data-avatar]'), function (img) {
      if (!img.hidden && img.complete && img.naturalWidth === 0) { pictureFailed(img); }
    });
  }
  document.addEventListener('error', function (event) {
    var img = event.target;
    if (img && img.tagName === 'IMG' && img.hasAttribute('data-avatar')) { pictureFailed(img); }
  }, true);

  // ---- where posts go: the targets the author chose ----
  // Ticks changed and not yet saved, by platform: a re-read of the list keeps them.
  var unsaved = {};
  function ticksOf(platform) {
    var form = $('form[data-targets="' + platform + '"]');
    return form ? Array.prototype.slice.call(form.querySelectorAll('input[name="target"]')) : [];
  }
  function ticked(platform) {
    return ticksOf(platform).filter(function (box) { return box.checked; })
      .map(function (box) { return box.value; });
  }
  function keepTicks() {
    Object.keys(unsaved).forEach(function (platform) {
      ticksOf(platform).forEach(function (box) { box.checked = unsaved[platform].indexOf(box.value) >= 0; });
    });
  }
  function targetRefusal(platform, error) {
    var name = names(platform);
    switch (error.code) {
      case 'no_target_chosen':
        return [el('p', { 'class': 'error' }, ['Tick at least one place for posts to ' + name + ' to go, then Save.'])];
      case 'unknown_target':
        return [el('p', { 'class': 'error' }, ['One of these is no longer on your ' + name + ' account. The list has been read again: choose again.'])];
      case 'duplicate_target':
        return [el('p', { 'class': 'error' }, ['Each place can be chosen once. Reload the page and choose again.'])];
      case 'no_targets_to_choose':
        return [el('p', { 'class': 'error' }, [name + ' has nothing to choose: posts go to the account itself.'])];
      default:
        return errorLines(error);
    }
  }
  function saveTargets(platform) {
    var name = names(platform);
    say(platform, [el('p', {}, ['Saving…'])]);
    post('/targets/' + platform, { targets: ticked(platform) }).then(function (answer) {
      var error = answer.body.error || {};
      if (!answer.ok) {
        if (error.code === 'unknown_target') { delete unsaved[platform]; refresh(); }
        say(platform, targetRefusal(platform, error));
        return;
      }
      delete unsaved[platform];
      var entry = answer.body.connection || {};
      var chosen = (entry.targets || []).filter(function (t) {
        return (entry.chosen_targets || []).indexOf(t.id) >= 0;
      }).map(function (t) { return t.name; });
      say(platform, [el('p', { 'class': 'ok' }, ['Saved: posts to ' + name + ' go to ' + chosen.join(', ') + '.'])]);
      refresh();
    }, function () {
      say(platform, [el('p', { 'class': 'error' }, ['The service did not answer. Try again.'])]);
    });
  }
  document.addEventListener('change', function (event) {
    var form = event.target.closest && event.target.closest('form[data-targets]');
    if (form) { var platform = form.getAttribute('data-targets'); unsaved[platform] = ticked(platform); }
  });
  document.addEventListener('submit', function (event) {
    var form = event.target.closest && event.target.closest('form[data-targets]');
    if (!form) { return; }
    event.preventDefault();
    saveTargets(form.getAttribute('data-targets'));
  });
  pictures();

  // ---- + Connect Account ----
  var opener = $('#connect-open');
  var panel = $('#connect-panel');
  var select = $('#connect-platform');
  var go = $('#connect-go');
  var bluesky = $('#bluesky-form');
  function choose() {
    var isBluesky = select.value === 'bluesky';
    bluesky.hidden = !isBluesky;
    go.hidden = isBluesky;
  }
  opener.addEventListener('click', function () {
    panel.hidden = !panel.hidden;
    opener.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) { choose(); select.focus(); }
  });
  select.addEventListener('change', choose);
  go.addEventListener('click', function () { connect(select.value, false); });
  bluesky.addEventListener('submit', function (event) {
    event.preventDefault();
    var identifier = $('#bluesky-identifier');
    var password = $('#bluesky-password');
    notice([el('p', {}, ['Connecting Bluesky…'])]);
    post('/app-password', { identifier: identifier.value, app_password: password.value }).then(function (answer) {
      password.value = '';
      if (!answer.ok) { notice(errorLines(answer.body.error || {})); return; }
      var handle = answer.body.connection && answer.body.connection.account ? ' as ' + answer.body.connection.account.handle : '';
      notice([el('p', { 'class': 'ok' }, ['Bluesky is connected' + handle + '.'])]);
      refresh();
    });
  });

  // ---- live: the pen name's events ----
  if (window.EventSource) {
    var stream = new EventSource(page + '/events');
    EVENT_KINDS.forEach(function (kind) { stream.addEventListener(kind, refresh); });
    stream.addEventListener('open', function () { document.body.setAttribute('data-live', 'open'); });
  }
})();
