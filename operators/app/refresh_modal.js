/*
 * The App half of @marlin/marlin: `refresh_modal_sample`, an unlisted operator that shows the sample open in
 * the modal as the database now has it. Immediate runs trigger it at their end (operators/base.py).
 *
 * Why JavaScript: the App keeps the modal's sample in a Relay query keyed by (dataset, view, sample id) and
 * fetches it again only when those change, so no Python-triggerable App event (reload_samples,
 * reload_dataset, close_sample + open_sample) refreshes it: a modal opened before a run kept showing no
 * events and scene None until a browser reload. This asks the App server for the sample the way the modal
 * does and hands it to the App's own `useRefreshSample`, which updates the modal in place. The modal's
 * sidebar lists the fields the grid had when the modal opened; a run's new fields are added to it (as the
 * App does when it opens a modal) once the grid's sidebar, reloaded by the run's reload_dataset, has them.
 * Limit (seen in Chromium): the modal's video does not draw a field that did not exist when the modal opened
 * (the sidebar lists it and its values); fields that existed are drawn at once.
 *
 * Plain JavaScript on the globals the App gives plugins (window.__foo__, __fos__, __fou__, recoil): no
 * build step. fiftyone.yml names this file as the plugin's js_bundle.
 */
(function () {
  "use strict";
  const { Operator, OperatorConfig, registerOperator } = window.__foo__;
  const fos = window.__fos__;
  const recoil = window.recoil;

  const MODAL_SAMPLE_QUERY = `query MarlinModalSample($dataset: String!, $view: BSONArray!, $filter: SampleFilter!) {
    sample(dataset: $dataset, view: $view, filter: $filter) {
      ... on VideoSample { sample }
      ... on ImageSample { sample }
    }
  }`;

  const SIDEBAR_WAIT_MS = 10000;
  const SIDEBAR_POLL_MS = 250;

  const UNLISTED = new Set(["frames", "tags"]); // frame fields and tags: the App lists them its own way

  // whether the sidebar groups list every field of `sample` (its own keys; "metadata" by its subfields)
  function listsFields(groups, sample) {
    const paths = groups.flatMap((group) => group.paths || []);
    return Object.keys(sample)
      .filter((key) => !key.startsWith("_") && !UNLISTED.has(key))
      .every((key) => paths.some((path) => path === key || path.startsWith(key + ".")));
  }

  function pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  class RefreshModalSample extends Operator {
    get config() {
      return new OperatorConfig({
        name: "refresh_modal_sample",
        label: "Marlin: show the open sample's new labels",
        unlisted: true,
      });
    }

    useHooks() {
      return {
        refreshSample: fos.useRefreshSample(),
        openModal: recoil.useRecoilCallback(({ snapshot }) => async () => ({
          dataset: await snapshot.getPromise(fos.datasetName),
          view: await snapshot.getPromise(fos.view),
          sampleId: await snapshot.getPromise(fos.nullableModalSampleId),
        }), []),
        // true once the modal's sidebar lists the sample's fields (given the grid's once the grid has them)
        syncSidebar: recoil.useRecoilCallback(({ snapshot, set }) => async (sample) => {
          const modalGroups = await snapshot.getPromise(fos.sidebarGroupsDefinition(true));
          if (listsFields(modalGroups, sample)) {
            return true;
          }
          const gridGroups = await snapshot.getPromise(fos.sidebarGroupsDefinition(false));
          if (!listsFields(gridGroups, sample)) {
            return false; // the grid has not reloaded the dataset yet
          }
          const known = new Set(modalGroups.flatMap((group) => group.paths || []));
          const modalActive = await snapshot.getPromise(fos.activeFields({ modal: true }));
          const gridActive = await snapshot.getPromise(fos.activeFields({ modal: false }));
          set(fos.sidebarGroupsDefinition(true), gridGroups);
          set(fos.activeFields({ modal: true }), [...modalActive, ...gridActive.filter((path) => !known.has(path))]);
          return true;
        }, []),
      };
    }

    async execute({ hooks }) {
      const { dataset, view, sampleId } = await hooks.openModal();
      if (!sampleId) {
        return; // no sample open: the grid refreshes through reload_samples
      }
      const response = await window.__fou__.getFetchFunction()("POST", "/graphql", {
        query: MODAL_SAMPLE_QUERY,
        variables: { dataset, view, filter: { id: sampleId } },
      });
      const sample = response && response.data && response.data.sample && response.data.sample.sample;
      if (!sample) {
        return;
      }
      hooks.refreshSample(sample);
      for (let waited = 0; !(await hooks.syncSidebar(sample)) && waited < SIDEBAR_WAIT_MS; waited += SIDEBAR_POLL_MS) {
        await pause(SIDEBAR_POLL_MS);
      }
    }
  }

  registerOperator(RefreshModalSample, "@marlin/marlin");
})();
