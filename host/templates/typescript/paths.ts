
  // paths: the roots [guest.paths] grants; a path cannot leave its root.
  const files = paths.open('files');
  if (req.isPost) {
    files.write('note.txt', req.form().text('note'));
    return Response.redirect(req.link('/'));
  }
  let note = '';
  try {
    note = files.readText('note.txt');
  } catch (e) {
    if (!(e instanceof GuestError && e.code === 'not-found')) throw e;
  }
  body +=
    `<form method="post"><label>Note <input name="note" value="${escape(note)}"></label> ` +
    '<button>Save</button></form>';
