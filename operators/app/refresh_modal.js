/*
 * The App half of @marlin/marlin: `refresh_modal_sample`, an unlisted operator that shows the sample open in
 * the modal as the database now has it. Immediate runs trigger it at their end (operators/base.py).
 *
 * Why JavaScript: the App keeps the modal's sample in a Relay query keyed by (dataset, view, sample id) and
 * fetches it again only when those change, so no Python-triggerable App event (reload_samples,
 * reload_dataset, close_sample + open_sample) refreshes it: a modal opened before a run kept showing no
 * events and scene None until a browser reload. This asks the App server for the sample the way the modal
 * does and hands it to the App's own `useRefreshSample`, which updates the modal in place.
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
      if (sample) {
        hooks.refreshSample(sample);
      }
    }
  }

  registerOperator(RefreshModalSample, "@marlin/marlin");
})();
